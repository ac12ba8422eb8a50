// Properties of the B3 readers on arbitrary bytes: the single-header parser never panics and what
// it accepts re-encodes to a value it accepts again (the same context, parent dropped with a
// deferred decision); the multi-header reader (values split at 0xff) never panics and what it
// accepts writes to multi headers it reads back identically.

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    use tracectx::{B3, B3MultiBuf, B3_SINGLE_MAX_LEN, Config, Sampling, extract_b3_multi, parse_b3_single, write_b3_multi, write_b3_single};
    let config = Config::default();
    if let Ok(b3) = parse_b3_single(data, &config) {
        let mut out = [0u8; B3_SINGLE_MAX_LEN];
        let text = write_b3_single(&b3, &mut out);
        let again = parse_b3_single(text.as_bytes(), &config).expect("our output parses");
        match (b3, again) {
            (B3::Context(mut a), B3::Context(b)) => {
                if a.sampling == Sampling::Defer {
                    a.parent_span_id = None;
                }
                assert_eq!(a, b);
            }
            (a, b) => assert_eq!(a, b),
        }
    }
    let mut values = data.split(|b| *b == 0xff).map(|v| std::str::from_utf8(v).unwrap_or(""));
    let names = ["x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"];
    let headers: Vec<(&str, &str)> = names.iter().zip(values.by_ref()).map(|(n, v)| (*n, v)).collect();
    if let Ok(Some(b3)) = extract_b3_multi(headers.as_slice(), &config) {
        let mut buf = B3MultiBuf::default();
        let out: Vec<(&str, &str)> = write_b3_multi(&b3, &mut buf).collect();
        assert_eq!(extract_b3_multi(out.as_slice(), &config).expect("our output parses"), Some(b3));
    }
}
