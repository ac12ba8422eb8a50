// Properties of the HTTP connection decoder on an arbitrary pair of streams (split at the first
// 0xff: client bytes, then server bytes), fed in chunks whose size comes from the first byte's low
// five bits (its top three pick how many bytes may go unrecognised before the connection is
// given up, so that bound is crossed at every offset):
// never panics; identical events whole and chunked; every transaction's byte counts stay within
// what was fed; buffered bytes stay within the limit; once the streams end, requests still
// waiting time out at their deadline and no deadline is left behind. Events are compared in full
// (`checks/events.rs`: Debug plus the head bytes it redacts).

include!("events.rs");

fn decode(client: &[u8], server: &[u8], step: usize, unrecognized: u64) -> Vec<String> {
    use l7decode::{Connection, Direction, Limits, Timestamp};
    let mut conn = Connection::new(Limits::default().max_buffered(1024).max_unrecognized(unrecognized));
    let mut out = Vec::new();
    for (dir, stream) in [(Direction::ClientToServer, client), (Direction::ServerToClient, server)] {
        for chunk in stream.chunks(step) {
            conn.feed(dir, Timestamp(0), chunk).expect("open direction");
            while let Some(e) = conn.poll_event() {
                out.push(full(&e));
            }
        }
    }
    // Whatever still waits times out at its deadline, and nothing is left due.
    if let Some(due) = conn.poll_timeout() {
        conn.handle_timeout(due);
        assert!(conn.poll_timeout().is_none_or(|next| next > due));
    }
    conn.feed_eof(Direction::ClientToServer, Timestamp(1));
    conn.feed_eof(Direction::ServerToClient, Timestamp(1));
    while let Some(e) = conn.poll_event() {
        if let l7decode::Event::Transaction(t) = &e {
            let body = t.request.as_ref().map_or(0, |m| m.body_bytes) + t.response.as_ref().map_or(0, |m| m.body_bytes);
            assert!(body <= (client.len() + server.len()) as u64);
        }
        out.push(full(&e));
    }
    out
}

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else { return };
    let split = rest.iter().position(|b| *b == 0xff).unwrap_or(rest.len());
    let (client, server) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
    let unrecognized = match control >> 5 {
        0 => 1 << 20,
        n => 4u64 << n,
    };
    let whole = decode(client, server, usize::MAX, unrecognized);
    let step = usize::from(control % 32) + 1;
    assert_eq!(whole, decode(client, server, step, unrecognized), "chunks of {step}");
}
