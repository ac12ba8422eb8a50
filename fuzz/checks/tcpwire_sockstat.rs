// Properties of the sockstat reader on arbitrary bytes: never panics, every error offset lies in
// the input, the iterator ends, and `parse_sockstat` fails exactly when some counter is malformed.

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    let mut any_error = false;
    for item in tcpwire::sockstat_counters(data) {
        match item {
            Ok((protocol, key, _)) => assert!(protocol.len() + key.len() <= data.len()),
            Err(e) => {
                assert!(e.offset() <= data.len() as u64);
                any_error = true;
            }
        }
    }
    assert_eq!(tcpwire::parse_sockstat(data).is_err(), any_error);
}
