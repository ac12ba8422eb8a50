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

/// A MySQL packet: 3-byte length, sequence id, payload.
pub(crate) fn packet(payload: &[u8], seq: u8) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

/// A MySQL reply of one column (`c`) and one row (`1`), EOF-terminated, sequence ids 1 to 5.
pub(crate) fn one_row_resultset() -> Vec<u8> {
    let mut resultset = Vec::new();
    for (seq, payload) in [
        &b"\x01"[..],
        b"\x03def\x00\x00\x00\x01c\x00\x0c\x3f\x00\x01\x00\x00\x00\x08\x81\x00\x00\x00\x00",
        &[0xfe, 0, 0, 2, 0],
        b"\x011",
        &[0xfe, 0, 0, 2, 0],
    ]
    .iter()
    .enumerate()
    {
        resultset.extend(packet(payload, seq as u8 + 1));
    }
    resultset
}

/// A BSON document of string (`Ok`) and double (`Err`) fields.
pub(crate) fn doc(fields: &[(&str, Result<&str, f64>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (key, value) in fields {
        match value {
            Ok(s) => {
                body.push(2);
                body.extend_from_slice(key.as_bytes());
                body.push(0);
                body.extend_from_slice(&((s.len() + 1) as i32).to_le_bytes());
                body.extend_from_slice(s.as_bytes());
                body.push(0);
            }
            Err(f) => {
                body.push(1);
                body.extend_from_slice(key.as_bytes());
                body.push(0);
                body.extend_from_slice(&f.to_le_bytes());
            }
        }
    }
    let mut out = ((body.len() + 5) as i32).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out.push(0);
    out
}

/// A MongoDB message header followed by `body`.
pub(crate) fn message(id: u32, to: u32, opcode: i32, body: &[u8]) -> Vec<u8> {
    let mut m = ((16 + body.len()) as u32).to_le_bytes().to_vec();
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&to.to_le_bytes());
    m.extend_from_slice(&opcode.to_le_bytes());
    m.extend_from_slice(body);
    m
}

/// An OP_MSG with one body section.
pub(crate) fn op_msg(id: u32, to: u32, body: &[u8]) -> Vec<u8> {
    let mut sections = vec![0, 0, 0, 0, 0];
    sections.extend_from_slice(body);
    message(id, to, 2013, &sections)
}
