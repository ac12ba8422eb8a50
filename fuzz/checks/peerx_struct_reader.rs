// Properties of the zero-copy `Struct` reader on arbitrary bytes:
// - `StructView::parse` never panics and respects the depth limit;
// - a validated view can be walked completely (every nested struct and list), `get` agrees with
//   the last entry of `iter`, and copying it to the owned form and re-encoding is stable.

fn walk(value: peerx::ValueView<'_>, depth: u16, limit: u16) {
    assert!(depth <= limit + 1, "validated depth bound");
    match value {
        peerx::ValueView::Struct(s) => {
            for (_, v) in s.iter() {
                walk(v, depth + 1, limit);
            }
        }
        peerx::ValueView::List(l) => {
            for v in l.iter() {
                walk(v, depth + 1, limit);
            }
        }
        _ => {}
    }
}

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    use peerx::{Limits, StructView, ValueView};
    let limits = Limits::default().max_depth(8);
    let Ok(view) = StructView::parse(data, 0, &limits) else { return };
    walk(ValueView::Struct(view), 0, 8);
    for (key, _) in view.iter() {
        let last = view.iter().filter(|(k, _)| *k == key).last().map(|(_, v)| v);
        assert!(view.get(key) == last || matches!(last, Some(ValueView::Number(n)) if n.is_nan()));
    }
    let owned = peerx::struct_from_view(view);
    let mut meta = peerx::Metadata::default();
    meta.peer = owned;
    let mut once = Vec::new();
    meta.encode_peer_struct(&mut once);
    let reparsed = StructView::parse(&once, 0, &Limits::default().max_depth(16)).expect("our own struct parses");
    let mut again = peerx::Metadata::default();
    again.peer = peerx::struct_from_view(reparsed);
    let mut twice = Vec::new();
    again.encode_peer_struct(&mut twice);
    assert_eq!(once, twice);
    let _ = format!("{view:?}");
}
