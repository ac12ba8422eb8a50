// Properties of the tracestate reader and editor on arbitrary bytes (split into fields at 0xff):
// never panics; an accepted list has at most 32 members that each re-validate; writing it and
// reading it back gives the same list; inserting a member puts it first with no duplicate key.

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    use tracectx::{Config, KeyGrammar, TraceState};
    for config in [Config::default(), Config::default().tracestate_keys(KeyGrammar::Level1)] {
        let mut state = TraceState::default();
        let mut ok = true;
        for field in data.split(|b| *b == 0xff) {
            if state.push_field(field, &config).is_err() {
                ok = false;
                break;
            }
        }
        if !ok {
            continue;
        }
        assert!(state.len() <= 32);
        let mut out = [0u8; 20 * 1024];
        let written = state.write(&mut out, 20 * 1024);
        let mut again = TraceState::default();
        again.push_field(written.as_bytes(), &config).expect("our output parses");
        assert_eq!(again, state);
        if state.insert(b"fuzz", b"1", &config).is_ok() {
            assert_eq!(state.iter().next(), Some((&b"fuzz"[..], &b"1"[..])));
            assert_eq!(state.iter().filter(|(k, _)| *k == b"fuzz").count(), 1);
        }
    }
}
