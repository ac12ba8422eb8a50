// Properties of `tcpwire::parse_row` on arbitrary bytes (both byte orders, both modes):
// - never panics; an error's offset lies within the line;
// - a row accepted in strict mode is accepted leniently with the same fields;
// - formatting an accepted row with `encode_row` and parsing it back gives the same fields, and the
//   formatted text is accepted in strict mode when the row has a kernel layout.

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    use tcpwire::{ByteOrder, ROW_MAX_LEN, RowOptions, encode_row, parse_row};
    for order in [ByteOrder::Little, ByteOrder::Big] {
        let lenient = RowOptions::default().byte_order(order);
        let strict = lenient.strict(true);
        let loose = parse_row(data, lenient);
        if let Err(e) = &loose {
            assert!(e.offset() <= data.len() as u64, "{e:?} beyond the line");
        }
        match parse_row(data, strict) {
            Ok(row) => assert_eq!(Some(row.fields()), loose.as_ref().ok().map(|r| r.fields())),
            Err(e) => assert!(e.offset() <= data.len() as u64),
        }
        let Ok(row) = loose else { continue };
        let _ = format!("{row:?}");
        let mut buf = [0u8; ROW_MAX_LEN];
        let n = encode_row(row.fields(), order, &mut buf).expect("ROW_MAX_LEN always suffices");
        let text = core::str::from_utf8(&buf[..n]).expect("rows are ASCII");
        let again = parse_row(text.as_bytes(), lenient).expect("our own output parses");
        assert_eq!(again.fields(), row.fields(), "round trip of {text:?}");
        if matches!(row.columns(), 12 | 17) && row.extra().is_empty() {
            let strict_again = parse_row(text.as_bytes(), strict);
            assert!(strict_again.is_ok(), "{text:?}: {strict_again:?}");
        }
    }
}
