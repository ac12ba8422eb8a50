// Properties of the flow tracker on a random packet sequence: each 8-byte record of the input is
// one segment (endpoint pair out of 4 clients × 2 servers, direction, flags byte, a sequence
// offset, a time step, a payload length taken from a request-like pattern, and whether the
// tracker's timeouts are run first). Checked: never panics; bytes held never above the budget;
// every event names a flow that was opened and not yet closed (its Closed event last); opened =
// closed + open in the stats; the drop counters never exceed the segments given.

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::time::Duration;

    use l7decode::Timestamp;
    use l7decode::flows::{FlowEventKind, FlowLimits, FlowTracker, Segment};
    use l7decode::reassembly::{ReassemblyConfig, TcpFlags};

    const PATTERN: &[u8] =
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\x0a\x00\x00\x00\x03SELECT 1";
    let limits = FlowLimits::default()
        .max_flows(5)
        .max_bytes(24 << 10)
        .idle_timeout(Duration::from_millis(50))
        .transient_timeout(Duration::from_millis(20))
        .closed_linger(Duration::from_millis(30))
        .max_closed(3)
        .reassembly(ReassemblyConfig::default().max_buffered(2048).max_segments(8));
    let mut tracker = FlowTracker::new(limits);
    let clients: [SocketAddr; 4] = [
        "10.0.0.1:40000".parse().unwrap(),
        "10.0.0.1:40001".parse().unwrap(),
        "[2001:db8::1]:40000".parse().unwrap(),
        "10.0.0.2:3306".parse().unwrap(),
    ];
    let servers: [SocketAddr; 2] = ["10.0.0.9:80".parse().unwrap(), "10.0.0.9:3306".parse().unwrap()];
    let mut open: HashSet<u64> = HashSet::new();
    let mut ever: HashSet<u64> = HashSet::new();
    let mut now = 0u64;
    let mut given = 0u64;
    let mut drain = |tracker: &mut FlowTracker, open: &mut HashSet<u64>| {
        while let Some(event) = tracker.poll_event() {
            let id = event.flow.0;
            match event.kind {
                FlowEventKind::Opened { .. } => {
                    assert!(ever.insert(id), "flow {id} opened twice");
                    open.insert(id);
                }
                FlowEventKind::Closed { .. } => assert!(open.remove(&id), "close of unknown flow {id}"),
                _ => assert!(open.contains(&id), "event of unknown flow {id}"),
            }
        }
    };
    for record in data.chunks_exact(8) {
        let [who, flags, s0, s1, step, len, cut, control] = *record else { break };
        let client = clients[usize::from(who & 3)];
        let server = servers[usize::from((who >> 2) & 1)];
        let (src, dst) = if who & 0x80 != 0 { (server, client) } else { (client, server) };
        now += u64::from(step) * 1_000_000;
        if control & 1 != 0 && tracker.poll_timeout().is_some_and(|t| t <= Timestamp(now)) {
            tracker.handle_timeout(Timestamp(now));
            drain(&mut tracker, &mut open);
            assert!(tracker.stats().bytes_held <= limits.max_bytes);
            assert_eq!(tracker.stats().flows_open, open.len());
        }
        let start = usize::from(s0) % PATTERN.len();
        let len = usize::from(len) % (PATTERN.len() - start + 1);
        let payload = &PATTERN[start..start + len];
        let base: u32 = if who & 0x80 != 0 { 0x8000_0000 } else { 0xffff_ff00 };
        let segment = Segment {
            src,
            dst,
            seq: base.wrapping_add(u32::from(u16::from_le_bytes([s0, s1]) % 512)),
            ack: if control & 2 != 0 { 0x8000_0000_u32 } else { 0xffff_ff00 }.wrapping_add(u32::from(s1)),
            flags: TcpFlags(flags),
            payload,
            missing: u32::from(cut % 8),
        };
        tracker.segment(Timestamp(now), &segment);
        given += 1;
        drain(&mut tracker, &mut open);
        let stats = tracker.stats();
        assert!(stats.bytes_held <= limits.max_bytes, "{stats:?}");
        assert!(stats.flows_open <= limits.max_flows);
        assert_eq!(stats.flows_open, open.len());
        assert!(stats.late_acks + stats.dropped_after_close + stats.dropped_no_flow <= given);
        assert!(stats.dropped_replayed_syn <= stats.dropped_after_close);
    }
    tracker.feed_eof(Timestamp(now));
    drain(&mut tracker, &mut open);
    let stats = tracker.stats();
    assert!(open.is_empty(), "flows left open after the end: {open:?}");
    assert_eq!(stats.flows_open, 0);
    let closed = stats.closed_fin
        + stats.closed_rst
        + stats.closed_reused
        + stats.closed_end_of_input
        + stats.evicted_idle
        + stats.evicted_max_flows
        + stats.evicted_budget;
    assert_eq!(stats.flows_opened, closed, "{stats:?}");
    assert_eq!(stats.bytes_held, 0);
}
