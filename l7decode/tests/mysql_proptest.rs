//! Generated MySQL conversations (handshake, then queries, pings and a quit, with OK, ERR and
//! resultset replies whose packets straddle the 0xFFFFFF boundary) must decode to exactly the
//! commands generated, in any chunking, with nothing skipped.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use l7decode::mysql::{Command, MAX_PACKET, Outcome};
use l7decode::{Connection, Direction, Event, Limits, Protocol, Timestamp};
use proptest::prelude::*;

const C: Direction = Direction::ClientToServer;
const S: Direction = Direction::ServerToClient;

/// A payload as packets: 0xFFFFFF-byte pieces, and an empty packet after an exact multiple.
fn packets(payload: &[u8], first_seq: u8) -> (Vec<u8>, u8) {
    let mut out = Vec::with_capacity(payload.len() + payload.len() / MAX_PACKET as usize * 4 + 8);
    let mut seq = first_seq;
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PACKET as usize);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_PACKET as usize {
            return (out, seq);
        }
    }
}

fn lenenc(n: u64) -> Vec<u8> {
    match n {
        0..=250 => vec![n as u8],
        251..=0xffff => [vec![0xfc], (n as u16).to_le_bytes().to_vec()].concat(),
        0x1_0000..=0xff_ffff => [vec![0xfd], (n as u32).to_le_bytes()[..3].to_vec()].concat(),
        _ => [vec![0xfe], n.to_le_bytes().to_vec()].concat(),
    }
}

#[derive(Debug, Clone)]
enum Reply {
    Ok(u64),
    Err(u16),
    Rows { columns: u64, rows: Vec<usize> },
}

#[derive(Debug, Clone)]
enum Cmd {
    Query(usize, Reply),
    Ping,
}

fn reply_strategy() -> impl Strategy<Value = Reply> {
    prop_oneof![
        (0u64..100_000).prop_map(Reply::Ok),
        (1000u16..2000).prop_map(Reply::Err),
        (1u64..300, prop::collection::vec(row_size(), 0..6))
            .prop_map(|(columns, rows)| Reply::Rows { columns, rows }),
    ]
}

/// Mostly small, now and then exactly around the 0xFFFFFF packet boundary.
fn row_size() -> impl Strategy<Value = usize> {
    let edge = MAX_PACKET as usize;
    prop_oneof![
        12 => 1usize..400,
        1 => prop::sample::select(vec![edge - 1, edge, edge + 1, 2 * edge]),
    ]
}

fn cmd_strategy() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        4 => (row_size(), reply_strategy()).prop_map(|(n, r)| Cmd::Query(n, r)),
        1 => Just(Cmd::Ping),
    ]
}

/// The two streams, as (direction, bytes) turns, and what each command must decode to:
/// (name, status, text length, affected rows, columns, rows, error code).
type Want = (
    &'static str,
    Outcome,
    u64,
    Option<u64>,
    Option<u64>,
    u64,
    Option<u16>,
);

fn conversation(deprecate_eof: bool, cmds: &[Cmd]) -> (Vec<(Direction, Vec<u8>)>, Vec<Want>) {
    const DEPRECATE: u32 = 0x0100_0000;
    let caps: u32 = 0x0000_0200 | 0x0000_8000 | 0x0008_0000 | 0x0000_0008;
    let server_caps = caps | DEPRECATE;
    let client_caps = if deprecate_eof {
        caps | DEPRECATE
    } else {
        caps
    };
    let mut greeting = vec![10];
    greeting.extend_from_slice(b"5.5.5-10.11.19-MariaDB\0");
    greeting.extend_from_slice(&7u32.to_le_bytes());
    greeting.extend_from_slice(b"abcdefgh\0");
    greeting.extend_from_slice(&(server_caps as u16).to_le_bytes());
    greeting.push(45);
    greeting.extend_from_slice(&2u16.to_le_bytes());
    greeting.extend_from_slice(&((server_caps >> 16) as u16).to_le_bytes());
    greeting.push(21);
    greeting.extend_from_slice(&[0; 10]);
    greeting.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
    let mut hello = client_caps.to_le_bytes().to_vec();
    hello.extend_from_slice(&(1u32 << 24).to_le_bytes());
    hello.push(45);
    hello.extend_from_slice(&[0; 23]);
    hello.extend_from_slice(b"app\0");
    hello.push(20);
    hello.extend_from_slice(&[7; 20]);
    hello.extend_from_slice(b"shop\0mysql_native_password\0");
    let ok = |affected: u64, status: u16| {
        let mut p = vec![0];
        p.extend(lenenc(affected));
        p.push(0);
        p.extend_from_slice(&status.to_le_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        p
    };
    let mut turns = vec![
        (S, packets(&greeting, 0).0),
        (C, packets(&hello, 1).0),
        (S, packets(&ok(0, 2), 2).0),
    ];
    let mut want: Vec<Want> = vec![("LOGIN", Outcome::Ok, 0, Some(0), None, 0, None)];
    for cmd in cmds {
        match cmd {
            Cmd::Ping => {
                turns.push((C, packets(&[0x0e], 0).0));
                turns.push((S, packets(&ok(0, 2), 1).0));
                want.push(("COM_PING", Outcome::Ok, 0, Some(0), None, 0, None));
            }
            Cmd::Query(len, reply) => {
                let mut q = vec![0x03];
                q.extend((0..*len).map(|i| b"SELECT x FROM t "[i % 16]));
                turns.push((C, packets(&q, 0).0));
                let mut server = Vec::new();
                let mut seq = 1u8;
                let mut put = |payload: &[u8], server: &mut Vec<u8>| {
                    let (bytes, next) = packets(payload, seq);
                    server.extend_from_slice(&bytes);
                    seq = next;
                };
                let w = match reply {
                    Reply::Ok(n) => {
                        put(&ok(*n, 2), &mut server);
                        (
                            "COM_QUERY",
                            Outcome::Ok,
                            *len as u64,
                            Some(*n),
                            None,
                            0,
                            None,
                        )
                    }
                    Reply::Err(code) => {
                        let mut e = vec![0xff];
                        e.extend_from_slice(&code.to_le_bytes());
                        e.extend_from_slice(b"#42000something went wrong");
                        put(&e, &mut server);
                        (
                            "COM_QUERY",
                            Outcome::Err,
                            *len as u64,
                            None,
                            None,
                            0,
                            Some(*code),
                        )
                    }
                    Reply::Rows { columns, rows } => {
                        put(&lenenc(*columns), &mut server);
                        for _ in 0..*columns {
                            put(b"\x03def\x04shop\x01t\x01t\x01c\x01c\x0c\x21\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00", &mut server);
                        }
                        let eof = [0xfe, 0, 0, 2, 0];
                        if !deprecate_eof {
                            put(&eof, &mut server);
                        }
                        for size in rows {
                            // One value of `size` bytes: the row starts with its lenenc length,
                            // 0xFE for the largest, which only its length tells from a terminator.
                            let mut row = lenenc(*size as u64);
                            row.resize(row.len() + size, b'v');
                            put(&row, &mut server);
                        }
                        if deprecate_eof {
                            let mut end = ok(0, 2);
                            end[0] = 0xfe;
                            put(&end, &mut server);
                        } else {
                            put(&eof, &mut server);
                        }
                        (
                            "COM_QUERY",
                            Outcome::Ok,
                            *len as u64,
                            None,
                            Some(*columns),
                            rows.len() as u64,
                            None,
                        )
                    }
                };
                turns.push((S, server));
                want.push(w);
            }
        }
    }
    turns.push((C, packets(&[0x01], 0).0));
    want.push((
        "COM_QUIT",
        Outcome::NoResponseExpected,
        0,
        None,
        None,
        0,
        None,
    ));
    (turns, want)
}

fn decode(turns: &[(Direction, Vec<u8>)], cuts: &[usize]) -> (Vec<Command>, u64) {
    let mut conn = Connection::new(Limits::default());
    let mut commands = Vec::new();
    let mut drain = |conn: &mut Connection| {
        while let Some(e) = conn.poll_event() {
            match e {
                Event::Mysql(c) => commands.push(*c),
                Event::Protocol(p) => assert_eq!(p, Protocol::Mysql),
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    for (i, (dir, bytes)) in turns.iter().enumerate() {
        let step = cuts[i % cuts.len()].max(1);
        for piece in bytes.chunks(step) {
            conn.feed(*dir, Timestamp(i as u64), piece).unwrap();
            drain(&mut conn);
        }
    }
    conn.feed_eof(C, Timestamp(1 << 40));
    conn.feed_eof(S, Timestamp(1 << 40));
    drain(&mut conn);
    (commands, conn.stats().skipped_bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn generated_conversations_decode_exactly(
        deprecate_eof in any::<bool>(),
        cmds in prop::collection::vec(cmd_strategy(), 0..6),
        cuts in prop::collection::vec(prop_oneof![Just(usize::MAX), 1usize..64, 1usize..5000], 1..4),
    ) {
        let (turns, want) = conversation(deprecate_eof, &cmds);
        let (got, skipped) = decode(&turns, &cuts);
        prop_assert_eq!(skipped, 0);
        let got: Vec<Want> = got
            .iter()
            .map(|c| (c.name().unwrap(), c.outcome, c.text_len, c.affected_rows, c.num_fields, c.rows, c.error_code))
            .collect();
        prop_assert_eq!(got, want);
    }
}

/// The commands (and skipped bytes) of the turns with bytes `lost` of turn `at` lost.
fn decode_with_loss(
    turns: &[(Direction, Vec<u8>)],
    cuts: &[usize],
    (at, lost): (usize, std::ops::Range<usize>),
) -> (Vec<Command>, u64) {
    let mut conn = Connection::new(Limits::default());
    let mut commands = Vec::new();
    let mut drain = |conn: &mut Connection| {
        while let Some(e) = conn.poll_event() {
            match e {
                Event::Mysql(c) => commands.push(*c),
                Event::Protocol(p) => assert_eq!(p, Protocol::Mysql),
                Event::Resynced { direction, .. } => assert_eq!(direction, S),
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    for (i, (dir, bytes)) in turns.iter().enumerate() {
        let step = cuts[i % cuts.len()].max(1);
        let now = Timestamp(i as u64);
        let pieces: Vec<&[u8]> = if i == at {
            vec![&bytes[..lost.start], &bytes[lost.end..]]
        } else {
            vec![bytes]
        };
        for (k, part) in pieces.iter().enumerate() {
            if k == 1 {
                conn.feed_gap(*dir, now, lost.len() as u64);
                drain(&mut conn);
            }
            for piece in part.chunks(step) {
                conn.feed(*dir, now, piece).unwrap();
                drain(&mut conn);
            }
        }
    }
    conn.feed_eof(C, Timestamp(1 << 40));
    conn.feed_eof(S, Timestamp(1 << 40));
    drain(&mut conn);
    (commands, conn.stats().skipped_bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Bytes lost anywhere in one reply: in any chunking the same records; every other command
    /// exactly as generated; the damaged one with its real outcome (and no more rows than it
    /// had), or reported missing, flagged either way.
    #[test]
    fn a_loss_in_a_reply_damages_only_that_reply(
        deprecate_eof in any::<bool>(),
        cmds in prop::collection::vec(cmd_strategy(), 1..6),
        which in any::<prop::sample::Index>(),
        from in 0u32..1000,
        to in 1u32..=1000,
        cuts in prop::collection::vec(prop_oneof![1usize..64, 1usize..5000], 1..4),
    ) {
        let (turns, want) = conversation(deprecate_eof, &cmds);
        // Replies to the generated commands: the server turns after the login's.
        let replies: Vec<usize> = (3..turns.len()).filter(|&i| turns[i].0 == S).collect();
        let at = replies[which.index(replies.len())];
        let len = turns[at].1.len();
        let start = len * from as usize / 1000;
        let end = start + ((len - start) * to as usize / 1000).max(1);
        let loss = (at, start..end.min(len));
        prop_assume!(loss.1.start < loss.1.end);
        let (got, skipped) = decode_with_loss(&turns, &[usize::MAX], loss.clone());
        prop_assert_eq!(decode_with_loss(&turns, &cuts, loss.clone()), (got.clone(), skipped));
        // The damaged command: the one whose request precedes the reply turn (the login's
        // record comes first, from the handshake response, the first client turn).
        let damaged = turns[..at].iter().filter(|(d, _)| *d == C).count() - 1;
        prop_assert_eq!(got.len(), want.len());
        for (i, (c, w)) in got.iter().zip(&want).enumerate() {
            let summary = (
                c.name().unwrap(),
                c.outcome,
                c.text_len,
                c.affected_rows,
                c.num_fields,
                c.rows,
                c.error_code,
            );
            if i != damaged {
                prop_assert_eq!(summary, *w, "command {}", i);
                continue;
            }
            prop_assert!(c.flags.gap, "{:?}", c);
            if c.outcome == Outcome::Missing {
                prop_assert!(c.flags.truncated || c.flags.missing_response, "{:?}", c);
            } else {
                prop_assert_eq!(c.outcome, w.1, "{:?}", c);
                // An ERR's code is there unless the loss took it.
                prop_assert!(c.error_code.is_none() || c.error_code == w.6, "{:?}", c);
                prop_assert!(c.rows <= w.5, "{:?}", c);
            }
        }
    }
}
