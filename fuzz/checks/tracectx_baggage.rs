// Properties of the baggage reader on arbitrary bytes (fields split at 0xff): never panics; it
// stops at the configured member limit; every member's value percent-decodes into a buffer three
// times its size, and the result is UTF-8; keys are non-empty tokens.

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    use tracectx::{Config, extract_baggage};
    let fields: Vec<String> = data.split(|b| *b == 0xff).map(|f| String::from_utf8_lossy(f).into_owned()).collect();
    let headers: Vec<(&str, &str)> = fields.iter().map(|f| ("baggage", f.as_str())).collect();
    let config = Config::default().baggage_limits(8, 512);
    let mut members = 0;
    for member in extract_baggage(headers.as_slice(), &config) {
        let Ok(m) = member else { continue };
        members += 1;
        assert!(!m.key().is_empty());
        let mut buf = vec![0u8; m.raw_value().len() * 3 + 3];
        let value = m.decode_value(&mut buf).expect("three bytes per input byte always suffice");
        assert!(value.len() <= m.raw_value().len() * 3);
        let _ = m.properties().count();
    }
    assert!(members <= 8);
}
