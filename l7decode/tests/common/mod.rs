//! What the conversation-driven tests share: feeding (direction, bytes) turns to a connection in
//! a given chunking and collecting every event, the ends of both directions included.

#![allow(clippy::unwrap_used, dead_code)] // a panic is how a test reports failure

use l7decode::{Connection, Direction, Event, Limits, Timestamp};

/// Feeds each turn in `chunk`-byte pieces (turn `i` at time `10 i`), then both EOFs at `end`.
pub(crate) fn run(
    turns: &[(Direction, Vec<u8>)],
    chunk: usize,
    limits: Limits,
    end: u64,
) -> Vec<Event> {
    let mut conn = Connection::new(limits);
    let mut out = Vec::new();
    for (i, (dir, bytes)) in turns.iter().enumerate() {
        for piece in bytes.chunks(chunk) {
            conn.feed(*dir, Timestamp(i as u64 * 10), piece).unwrap();
            out.extend(std::iter::from_fn(|| conn.poll_event()));
        }
    }
    conn.feed_eof(Direction::ClientToServer, Timestamp(end));
    conn.feed_eof(Direction::ServerToClient, Timestamp(end));
    out.extend(std::iter::from_fn(|| conn.poll_event()));
    out
}

/// The events of the turns fed whole, after checking each of `chunks` gives the same ones.
pub(crate) fn invariant(
    turns: &[(Direction, Vec<u8>)],
    chunks: &[usize],
    limits: Limits,
    end: u64,
) -> Vec<Event> {
    let whole = run(turns, usize::MAX, limits, end);
    for &chunk in chunks {
        assert_eq!(run(turns, chunk, limits, end), whole, "chunks of {chunk}");
    }
    whole
}
