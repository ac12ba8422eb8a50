// Properties of the sock_diag reply parser on arbitrary datagrams:
// - `parse_netlink_message` never panics, consumes at least the 16-byte header and never more than
//   it was given, and `Partial` asks for exactly the bytes that are missing;
// - walking a datagram message by message terminates; attributes iterate to the end;
// - `DiagCounter` counts exactly the inet_diag messages the walk found before any error or DONE.

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    use tcpwire::{DiagCounter, NetlinkMessage, Status, parse_netlink_message};
    let mut at = 0;
    let mut sockets = 0u64;
    let mut clean_end = true;
    while let Some(rest) = data.get(at..).filter(|r| !r.is_empty()) {
        match parse_netlink_message(rest) {
            Ok(Status::Complete { value, consumed }) => {
                assert!((16..=rest.len()).contains(&consumed) || consumed == rest.len());
                assert!(consumed > 0);
                at += consumed;
                match value {
                    NetlinkMessage::InetDiag(msg) => {
                        sockets += 1;
                        let _ = format!("{msg:?}");
                        for (_, payload) in msg.attributes() {
                            assert!(payload.len() <= rest.len());
                        }
                    }
                    NetlinkMessage::Done { errno } => {
                        clean_end = errno == 0;
                        break;
                    }
                    NetlinkMessage::Error { errno } if errno != 0 => {
                        clean_end = false;
                        break;
                    }
                    _ => {}
                }
            }
            Ok(Status::Partial { needed }) => {
                let needed = needed.expect("netlink framing always knows").get();
                // Once nlmsg_len is in, the declared length says exactly what is missing (checked
                // for sizes worth allocating here; the parser itself never allocates).
                if rest.len() >= 4 && needed <= 1 << 20 {
                    let mut longer = rest.to_vec();
                    longer.resize(rest.len() + needed, 0);
                    assert!(!matches!(parse_netlink_message(&longer), Ok(Status::Partial { .. })));
                }
                clean_end = false;
                break;
            }
            Err(e) => {
                assert!(e.offset() <= rest.len() as u64);
                clean_end = false;
                break;
            }
        }
    }
    let mut counter = DiagCounter::new();
    let result = counter.feed_datagram(data);
    assert_eq!(counter.counts().rows, sockets);
    assert_eq!(result.is_ok(), clean_end, "{result:?}");
}
