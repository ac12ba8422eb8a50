//! sock_diag request bytes and reply parsing.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::path::Path;

use tcpwire::{
    DiagCounter, DumpProgress, ErrorKind, Family, NetlinkMessage, RowKind, SOCK_DIAG_REQUEST_LEN,
    SockDiagRequest, StateMask, Status, TcpState, encode_sock_diag_request, parse_netlink_message,
};

fn dump() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/netlink_dump_v4_v6.bin"))
        .unwrap()
}

#[test]
fn request_matches_the_kernel_abi() {
    let mut buf = [0xAAu8; 100];
    let request = SockDiagRequest::new(Family::Inet6)
        .states(StateMask::only(TcpState::LISTEN))
        .sequence(9);
    assert_eq!(
        encode_sock_diag_request(&request, &mut buf),
        Ok(SOCK_DIAG_REQUEST_LEN)
    );
    let mut expected = Vec::new();
    expected.extend_from_slice(&72u32.to_ne_bytes());
    expected.extend_from_slice(&20u16.to_ne_bytes()); // SOCK_DIAG_BY_FAMILY
    expected.extend_from_slice(&0x301u16.to_ne_bytes()); // NLM_F_REQUEST | NLM_F_DUMP
    expected.extend_from_slice(&9u32.to_ne_bytes());
    expected.extend_from_slice(&0u32.to_ne_bytes());
    expected.extend_from_slice(&[10, 6, 0, 0]); // AF_INET6, IPPROTO_TCP, no extensions
    expected.extend_from_slice(&(1u32 << 10).to_ne_bytes());
    expected.extend_from_slice(&[0; 48]);
    assert_eq!(&buf[..72], &expected[..]);
    assert_eq!(buf[72], 0xAA, "nothing written past the request");
    let short = encode_sock_diag_request(&request, &mut [0u8; 71]).unwrap_err();
    assert_eq!(short.kind(), ErrorKind::BufferTooSmall { needed: 72 });
    assert_eq!(StateMask::ALL.with(TcpState(0x0D)).0, 0x2FFF);
}

#[test]
fn reply_messages_decode() {
    let data = dump();
    let mut at = 0;
    let mut seen = Vec::new();
    while at < data.len() {
        let Status::Complete { value, consumed } = parse_netlink_message(&data[at..]).unwrap()
        else {
            panic!("partial at {at}");
        };
        at += consumed;
        seen.push(value);
    }
    let NetlinkMessage::InetDiag(listen) = seen[0] else {
        panic!()
    };
    assert_eq!(listen.state, TcpState::LISTEN);
    assert_eq!(listen.local.to_string(), "127.0.0.1:22");
    assert_eq!(
        (listen.wqueue, listen.inode, listen.cookie),
        (128, Some(1061), 1234)
    );
    assert_eq!(
        listen.attributes().collect::<Vec<_>>(),
        vec![(1, &[1u8, 2, 3, 4][..])]
    );
    let NetlinkMessage::InetDiag(est) = seen[1] else {
        panic!()
    };
    assert_eq!(
        (est.local.to_string(), est.remote.to_string()),
        ("10.0.0.1:50000".into(), "10.0.0.2:443".into())
    );
    assert_eq!((est.uid, est.wqueue), (1000, 16));
    let NetlinkMessage::InetDiag(tw) = seen[2] else {
        panic!()
    };
    assert_eq!(tw.local.to_string(), "[::1]:443");
    assert_eq!(tw.kind(), RowKind::TimeWait);
    assert_eq!(seen[3], NetlinkMessage::Done { errno: 0 });
}

#[test]
fn every_prefix_is_partial_with_the_exact_shortfall_once_the_length_is_known() {
    let data = dump();
    let Status::Complete { consumed, .. } = parse_netlink_message(&data).unwrap() else {
        panic!()
    };
    for cut in 0..consumed {
        match parse_netlink_message(&data[..cut]).unwrap() {
            Status::Partial { needed } => {
                let needed = needed.unwrap().get();
                // Once nlmsg_len (the first 4 bytes) is in, the shortfall is exact.
                let target = if cut >= 4 { consumed } else { 16 };
                assert_eq!(cut + needed, target, "cut {cut}");
            }
            other => panic!("cut {cut}: {other:?}"),
        }
    }
}

#[test]
fn counter_follows_the_dump_and_reports_kernel_errors() {
    let data = dump();
    let mut counter = DiagCounter::new();
    assert_eq!(counter.feed_datagram(&data), Ok(DumpProgress::Done));
    let counts = counter.counts();
    assert_eq!(counts.rows, 3);
    assert_eq!(counts.state(TcpState::LISTEN), 1);
    // LISTEN's wqueue (max backlog 128) goes to the LISTEN sum, as node_exporter >= 1.4 exposes it.
    assert_eq!((counts.tx_queue_listen, counts.tx_queue_other), (128, 16));
    assert_eq!(counts.time_wait_rows, 1);

    let mut truncated = DiagCounter::new();
    let e = truncated.feed_datagram(&data[..100]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NetlinkTruncated);
    assert_eq!(
        truncated.counts().rows,
        1,
        "the whole first message still counts"
    );

    let mut eacces = Vec::new();
    eacces.extend_from_slice(&20u32.to_ne_bytes());
    eacces.extend_from_slice(&2u16.to_ne_bytes());
    eacces.extend_from_slice(&0u16.to_ne_bytes());
    eacces.extend_from_slice(&[0; 8]);
    eacces.extend_from_slice(&(-13i32).to_ne_bytes());
    let e = DiagCounter::new().feed_datagram(&eacces).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NetlinkErrno { errno: 13 });

    // A dump that fails ends in DONE carrying the error (-ENOENT without tcp_diag).
    let mut failed_dump = Vec::new();
    failed_dump.extend_from_slice(&20u32.to_ne_bytes());
    failed_dump.extend_from_slice(&3u16.to_ne_bytes());
    failed_dump.extend_from_slice(&2u16.to_ne_bytes());
    failed_dump.extend_from_slice(&[0; 8]);
    failed_dump.extend_from_slice(&(-2i32).to_ne_bytes());
    let e = DiagCounter::new().feed_datagram(&failed_dump).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NetlinkErrno { errno: 2 });

    // One counter across two dumps (IPv4 then IPv6) sums both and reports each end.
    let mut both = DiagCounter::new();
    assert_eq!(both.feed_datagram(&data), Ok(DumpProgress::Done));
    assert_eq!(both.feed_datagram(&data[..272]), Ok(DumpProgress::More));
    assert!(!both.is_done());
    assert_eq!(both.feed_datagram(&data[272..]), Ok(DumpProgress::Done));
    assert_eq!(both.counts().rows, 6);

    let bogus_len = [4u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let e = parse_netlink_message(&bogus_len).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NetlinkBadLength { declared: 4 });
}
