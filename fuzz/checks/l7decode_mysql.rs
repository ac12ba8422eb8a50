// Properties of the MySQL sub-decoder on arbitrary conversations. The input is a control byte
// (low five bits: chunk size; top bits: how the connection starts: after a real handshake with
// DEPRECATE_EOF off or on, after one negotiating compression, or joined mid-stream on port 3306),
// then turns of one length byte (top bit: server) and that many bytes. Checked: never panics;
// identical events whole and chunked; every record's counts stay within what was fed (inflated).

fn mysql_packet(payload: &[u8], seq: u8) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

/// A greeting, a handshake response with `client_caps`, and the OK that ends the login.
fn mysql_handshake(client_caps: u32) -> Vec<(bool, Vec<u8>)> {
    let server_caps: u32 = 0x0100_0000 | 0x0008_8228 | 0x20;
    let mut greeting = vec![10];
    greeting.extend_from_slice(b"5.5.5-10.11.19-MariaDB\0\x07\0\0\0abcdefgh\0");
    greeting.extend_from_slice(&(server_caps as u16).to_le_bytes());
    greeting.extend_from_slice(&[45, 2, 0]);
    greeting.extend_from_slice(&((server_caps >> 16) as u16).to_le_bytes());
    greeting.extend_from_slice(&[21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    greeting.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
    let mut hello = client_caps.to_le_bytes().to_vec();
    hello.extend_from_slice(&[0, 0, 0, 1, 45]);
    hello.extend_from_slice(&[0; 23]);
    hello.extend_from_slice(b"app\0\x14aaaaaaaaaaaaaaaaaaaa");
    hello.extend_from_slice(b"shop\0mysql_native_password\0");
    vec![
        (true, mysql_packet(&greeting, 0)),
        (false, mysql_packet(&hello, 1)),
        (true, mysql_packet(&[0, 0, 0, 2, 0, 0, 0], 2)),
    ]
}

include!("turns.rs");

fn decode_mysql(turns: &[(bool, Vec<u8>)], step: usize, hinted: bool) -> Vec<String> {
    use l7decode::{Connection, Event, Limits, Protocol};
    let hint = hinted.then_some(Protocol::Mysql);
    let conn = Connection::new(Limits::default().max_pending(8).max_statements(4)).with_hint(hint);
    // Inflated bytes can outnumber the compressed ones fed, by zlib's ratio at most (1032:1).
    let fed: u64 = turns.iter().map(|(_, b)| b.len() as u64).sum::<u64>() * 1032;
    feed_turns(conn, turns, step, |e| {
        if let Event::Mysql(c) = e {
            let bytes = c.request.map_or(0, |s| s.bytes) + c.response.map_or(0, |s| s.bytes);
            assert!(bytes <= fed, "{bytes} > {fed}");
            assert!(c.rows <= fed / 4, "{} rows from {fed} bytes", c.rows);
            assert!(c.query().map_or(0, str::len) <= 2048);
        }
    })
}

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else { return };
    const BASE: u32 = 0x0008_8208;
    let (mut turns, hinted) = match control >> 5 {
        0 | 1 => (mysql_handshake(BASE), false),
        2 | 3 => (mysql_handshake(BASE | 0x0100_0000), false),
        4 | 5 => (mysql_handshake(BASE | 0x20), false),
        _ => (Vec::new(), true),
    };
    read_turns(rest, &mut turns);
    let whole = decode_mysql(&turns, usize::MAX, hinted);
    let step = usize::from(control % 32) + 1;
    assert_eq!(whole, decode_mysql(&turns, step, hinted), "chunks of {step}");
}
