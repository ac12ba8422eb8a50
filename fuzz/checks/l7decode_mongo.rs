// Properties of the MongoDB sub-decoder on arbitrary conversations: the input is a control byte
// (low five bits: chunk size; top bit: joined mid-stream on port 27017 rather than starting at a
// request) then turns of one length byte (top bit: server) and that many bytes; a real request
// header starts the client side unless joined mid-stream. Checked: never panics; identical events
// whole and chunked; counts within what was fed.

include!("turns.rs");

fn decode_mongo(turns: &[(bool, Vec<u8>)], step: usize, hinted: bool) -> Vec<String> {
    use l7decode::{Connection, Event, Limits, Protocol};
    let hint = hinted.then_some(Protocol::Mongo);
    let conn = Connection::new(Limits::default().max_pending(8)).with_hint(hint);
    // Inflated bytes can outnumber the compressed ones fed, by zlib's ratio at most (1032:1).
    let fed: u64 = turns.iter().map(|(_, b)| b.len() as u64).sum::<u64>() * 1032;
    feed_turns(conn, turns, step, |e| {
        if let Event::Mongo(o) = e {
            let bytes = o.request.map_or(0, |s| s.bytes) + o.response.map_or(0, |s| s.bytes);
            assert!(bytes <= fed.max(16 * 1032) + 48_000_000, "{bytes}");
            assert!(o.batch_docs <= fed, "{} docs from {fed} bytes", o.batch_docs);
        }
    })
}

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else { return };
    let hinted = control & 0x80 != 0;
    let mut turns = Vec::new();
    read_turns(rest, &mut turns);
    let whole = decode_mongo(&turns, usize::MAX, hinted);
    let step = usize::from(control % 32) + 1;
    assert_eq!(whole, decode_mongo(&turns, step, hinted), "chunks of {step}");
}
