// What the conversation checks (`l7decode_mysql`, `l7decode_mongo`) share: turns read from the
// fuzz input, and a connection fed them in a given chunking. Included by each check (with
// `events.rs`).

include!("events.rs");

/// Appends the turns encoded in `rest`: a length byte (top bit: server side) and that many bytes.
fn read_turns(mut rest: &[u8], turns: &mut Vec<(bool, Vec<u8>)>) {
    while let Some((&head, after)) = rest.split_first() {
        let len = usize::from(head & 0x7f).min(after.len());
        turns.push((head & 0x80 != 0, after[..len].to_vec()));
        rest = &after[len..];
    }
}

/// Feeds the turns to `conn` in `step`-byte chunks (turn `i` at time `i`), lets whatever still
/// waits time out (checking no deadline is left behind), then ends both sides; every event goes
/// through `inspect` and comes back in full (`events.rs`).
fn feed_turns(
    mut conn: l7decode::Connection,
    turns: &[(bool, Vec<u8>)],
    step: usize,
    inspect: impl Fn(&l7decode::Event),
) -> Vec<String> {
    use l7decode::{Direction, Timestamp};
    let mut out = Vec::new();
    let mut drain = |conn: &mut l7decode::Connection| {
        while let Some(e) = conn.poll_event() {
            inspect(&e);
            out.push(full(&e));
        }
    };
    for (i, (server, bytes)) in turns.iter().enumerate() {
        let dir = if *server { Direction::ServerToClient } else { Direction::ClientToServer };
        for chunk in bytes.chunks(step) {
            conn.feed(dir, Timestamp(i as u64), chunk).expect("open direction");
            drain(&mut conn);
        }
    }
    if let Some(due) = conn.poll_timeout() {
        conn.handle_timeout(due);
        assert!(conn.poll_timeout().is_none_or(|next| next > due));
        drain(&mut conn);
    }
    conn.feed_eof(Direction::ClientToServer, Timestamp(1 << 20));
    conn.feed_eof(Direction::ServerToClient, Timestamp(1 << 20));
    drain(&mut conn);
    out
}
