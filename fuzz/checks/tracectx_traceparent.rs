// Properties of `parse_traceparent` on arbitrary bytes: never panics; an accepted value has
// non-zero ids, a version other than ff, and re-emits (as version 00, defined flags only) to a
// value that parses to the same ids; error offsets lie within the input.

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    use tracectx::{Config, TRACEPARENT_LEN, parse_traceparent, write_traceparent};
    for config in [Config::default(), Config::default().uppercase_hex(true)] {
        match parse_traceparent(data, &config) {
            Ok(tp) => {
                assert!(!tp.trace_id.is_zero() && !tp.parent_id.is_zero() && tp.version != 0xff);
                let mut out = [0u8; TRACEPARENT_LEN];
                let text = write_traceparent(&tp, &mut out);
                let again = parse_traceparent(text.as_bytes(), &Config::default()).expect("our output parses");
                assert_eq!((again.trace_id.bytes(), again.parent_id), (tp.trace_id.bytes(), tp.parent_id));
                assert_eq!(again.flags, tp.flags.defined());
            }
            Err(e) => assert!(e.offset() <= data.len() as u64, "{e:?}"),
        }
    }
}
