//! MySQL through the connection decoder: the connection phase (auth switch, SSLRequest), reply
//! shapes (LOCAL INFILE, multi-resultsets, progress reports, metadata-less resultsets, the
//! statistics string), the statement table's bound, and the same events in any chunking.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;
use common::packet;

use l7decode::mysql::{Command, Outcome};
use l7decode::{Connection, Direction, Event, Flags, Limits, Protocol, Stats, Timestamp};

const C: Direction = Direction::ClientToServer;
const S: Direction = Direction::ServerToClient;

/// Greeting, handshake response and OK, with `client_caps` (the server offers everything).
fn login(client_caps: u32) -> Vec<(Direction, Vec<u8>)> {
    let server_caps: u32 = 0x0fff_ffff;
    let mut greeting = b"\x0a5.5.5-10.11.19-MariaDB\x00\x07\x00\x00\x00abcdefgh\x00".to_vec();
    greeting.extend_from_slice(&(server_caps as u16).to_le_bytes());
    greeting.extend_from_slice(&[45, 2, 0]);
    greeting.extend_from_slice(&((server_caps >> 16) as u16).to_le_bytes());
    greeting.extend_from_slice(&[21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    greeting.extend_from_slice(b"ijklmnopqrst\x00mysql_native_password\x00");
    let mut hello = client_caps.to_le_bytes().to_vec();
    hello.extend_from_slice(&[0, 0, 0, 1, 45]);
    hello.extend_from_slice(&[0; 23]);
    hello.extend_from_slice(b"app\x00\x14aaaaaaaaaaaaaaaaaaaashop\x00mysql_native_password\x00");
    vec![(S, packet(&greeting, 0)), (C, packet(&hello, 1))]
}

const CAPS: u32 = 0x0008_8208; // PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH | CONNECT_WITH_DB
const OK: &[u8] = &[0, 0, 0, 2, 0, 0, 0];

/// The records, after checking every chunking gives the same events.
fn commands(turns: &[(Direction, Vec<u8>)], limits: Limits) -> Vec<Command> {
    common::invariant(turns, &[1, 2, 3, 7], limits, 1_000)
        .into_iter()
        .filter_map(|e| match e {
            Event::Mysql(c) => Some(*c),
            Event::Protocol(Protocol::Mysql) => None,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn summary(c: &Command) -> (Option<&str>, Outcome, Option<u64>, Option<u64>, u64) {
    (c.name(), c.outcome, c.affected_rows, c.num_fields, c.rows)
}

#[test]
fn debug_output_hides_sql_literals_and_error_texts() {
    let mut conn = Connection::new(Limits::default());
    let query = b"\x03SELECT * FROM users WHERE password = 'hunter2'";
    conn.feed(C, Timestamp(1), &packet(query, 0)).unwrap();
    let error = b"\xff\x26\x04#23000Duplicate entry 'hunter2' for key 'pw'";
    conn.feed(S, Timestamp(2), &packet(error, 1)).unwrap();
    let commands: Vec<_> = std::iter::from_fn(|| conn.poll_event())
        .filter_map(|e| match e {
            Event::Mysql(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(commands.len(), 1);
    let c = &commands[0];
    assert!(c.query().unwrap().contains("hunter2"));
    assert!(c.error_message().unwrap().contains("hunter2"));
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("COM_QUERY") && shown.contains("error_code: Some(1062)"),
        "{shown}"
    );
}

#[test]
fn auth_switch_rounds_belong_to_the_login() {
    let mut turns = login(CAPS);
    turns.push((S, packet(b"\xfecaching_sha2_password\x00salt", 2)));
    turns.push((C, packet(&[9; 32], 3)));
    turns.push((S, packet(b"\x01\x03", 4)));
    turns.push((S, packet(OK, 5)));
    turns.push((C, packet(b"\x0e", 0)));
    turns.push((S, packet(OK, 1)));
    let got = commands(&turns, Limits::default());
    assert_eq!(got.len(), 2);
    assert_eq!(
        summary(&got[0]),
        (Some("LOGIN"), Outcome::Ok, Some(0), None, 0)
    );
    assert_eq!(
        (got[0].user(), got[0].schema()),
        (Some("app"), Some("shop"))
    );
    assert_eq!(got[0].response.unwrap().bytes, 27 + 2 + 7);
    assert_eq!(
        summary(&got[1]),
        (Some("COM_PING"), Outcome::Ok, Some(0), None, 0)
    );
}

#[test]
fn an_ssl_request_hands_the_connection_to_tls() {
    let mut turns = login(CAPS);
    let mut ssl = (CAPS | 0x800).to_le_bytes().to_vec();
    ssl.extend_from_slice(&[0, 0, 0, 1, 45]);
    ssl.extend_from_slice(&[0; 23]);
    turns[1] = (C, packet(&ssl, 1));
    turns.push((C, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec()));
    turns.push((S, b"\x16\x03\x03\x00\x7a\x02".to_vec()));
    let events = common::run(&turns, usize::MAX, Limits::default(), 1_000);
    assert_eq!(
        events,
        [
            Event::Protocol(Protocol::Mysql),
            Event::Protocol(Protocol::Tls)
        ]
    );
}

#[test]
fn local_infile_data_is_not_read_as_commands() {
    let mut turns = login(CAPS);
    turns.push((S, packet(OK, 2)));
    turns.push((
        C,
        packet(b"\x03LOAD DATA LOCAL INFILE '/tmp/x' INTO TABLE t", 0),
    ));
    turns.push((S, packet(b"\xfb/tmp/x", 1)));
    // File data: sequence ids go on, and the first bytes look like a command on purpose.
    turns.push((C, packet(b"\x03\x00\x00\x00\x03SELECT", 2)));
    turns.push((C, packet(b"1,2\n3,4\n", 3)));
    turns.push((C, packet(b"", 4)));
    turns.push((S, packet(&[0, 2, 0, 2, 0, 0, 0], 5)));
    let got = commands(&turns, Limits::default());
    assert_eq!(got.len(), 2);
    assert_eq!(
        summary(&got[1]),
        (Some("COM_QUERY"), Outcome::Ok, Some(2), None, 0)
    );
}

/// A resultset of `rows` one-value rows ending in an EOF with `status`, from sequence id `seq`.
fn resultset(rows: usize, status: u16, seq: &mut u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |payload: &[u8]| {
        out.extend(packet(payload, *seq));
        *seq = seq.wrapping_add(1);
    };
    put(b"\x01");
    put(b"\x03def\x00\x00\x00\x01c\x00\x0c\x3f\x00\x01\x00\x00\x00\x08\x81\x00\x00\x00\x00");
    put(&[0xfe, 0, 0, 2, 0]);
    for _ in 0..rows {
        put(b"\x011");
    }
    let mut eof = vec![0xfe, 0, 0];
    eof.extend_from_slice(&status.to_le_bytes());
    put(&eof);
    out
}

#[test]
fn multi_resultsets_progress_reports_and_statistics() {
    let mut turns = login(CAPS);
    turns.push((S, packet(OK, 2)));
    // CALL: two resultsets (the first says more follow), then the final OK.
    turns.push((C, packet(b"\x03CALL p()", 0)));
    let mut seq = 1;
    let mut reply = resultset(3, 0x000a, &mut seq);
    reply.extend(resultset(2, 0x000a, &mut seq));
    reply.extend(packet(OK, seq));
    turns.push((S, reply));
    // MariaDB's progress report (ERR 0xFFFF) is not an error.
    turns.push((C, packet(b"\x03ALTER TABLE t ADD c INT", 0)));
    let mut progress = b"\xff\xff\xff\x01\x01\x02".to_vec();
    progress.extend_from_slice(&[0; 4]);
    turns.push((S, [packet(&progress, 1), packet(OK, 2)].concat()));
    turns.push((C, packet(b"\x09", 0)));
    turns.push((S, packet(b"Uptime: 42  Threads: 1  Questions: 7", 1)));
    let got = commands(&turns, Limits::default());
    assert_eq!(got.len(), 4);
    assert_eq!(
        summary(&got[1]),
        (Some("COM_QUERY"), Outcome::Ok, Some(0), Some(1), 5)
    );
    assert_eq!(got[1].resultsets, 2);
    assert_eq!(
        summary(&got[2]),
        (Some("COM_QUERY"), Outcome::Ok, Some(0), None, 0)
    );
    assert_eq!(got[2].error_code, None);
    assert_eq!(
        summary(&got[3]),
        (Some("COM_STATISTICS"), Outcome::Ok, None, None, 0)
    );
}

#[test]
fn a_resultset_without_metadata_goes_straight_to_rows() {
    // DEPRECATE_EOF negotiated; the column count carries "no metadata follows".
    let mut turns = login(CAPS | 0x0100_0000);
    turns.push((S, packet(OK, 2)));
    turns.push((C, packet(b"\x03SELECT a, b FROM t", 0)));
    let reply = [
        packet(b"\x02\x00", 1),
        packet(b"\x011\x012", 2),
        packet(b"\x013\x014", 3),
        packet(&[0xfe, 0, 0, 2, 0, 0, 0], 4),
    ]
    .concat();
    turns.push((S, reply));
    let got = commands(&turns, Limits::default());
    assert_eq!(
        summary(&got[1]),
        (Some("COM_QUERY"), Outcome::Ok, None, Some(2), 2)
    );
}

#[test]
fn the_statement_table_is_bounded() {
    let mut turns = login(CAPS);
    turns.push((S, packet(OK, 2)));
    for id in 1..=3u32 {
        turns.push((C, packet(format!("\x16SELECT {id}").as_bytes(), 0)));
        let mut ok = vec![0];
        ok.extend_from_slice(&id.to_le_bytes());
        ok.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
        turns.push((S, packet(&ok, 1)));
    }
    for id in [1u32, 3] {
        let mut exec = vec![0x17];
        exec.extend_from_slice(&id.to_le_bytes());
        exec.extend_from_slice(&[0, 1, 0, 0, 0]);
        turns.push((C, packet(&exec, 0)));
        turns.push((S, packet(OK, 1)));
    }
    let got = commands(&turns, Limits::default().max_statements(2));
    let executes: Vec<_> = got.iter().filter(|c| c.code == Some(0x17)).collect();
    // The oldest statement was forgotten; the newest is still known.
    assert_eq!(executes[0].query(), None);
    assert_eq!(executes[1].query(), Some("SELECT 3"));
    assert_eq!(executes[1].stmt_id, Some(3));
}

// Losses inside a resultset's rows: the packets after the loss are found again, and the command
// keeps its real outcome, the rows seen and the `gap` flag.

/// One turn of a conversation with losses: bytes of one direction, or bytes of it lost.
#[derive(Debug, Clone)]
enum Turn {
    Bytes(Direction, Vec<u8>),
    Gap(Direction, u64),
}

/// Feeds the turns (bytes in `chunk`-byte pieces, turn `i` at time `10 i`), then both EOFs.
fn run_with_gaps(turns: &[Turn], chunk: usize, limits: Limits) -> (Vec<Event>, Stats) {
    let mut conn = Connection::new(limits);
    let mut out = Vec::new();
    for (i, turn) in turns.iter().enumerate() {
        let now = Timestamp(i as u64 * 10);
        match turn {
            Turn::Bytes(dir, bytes) => {
                for piece in bytes.chunks(chunk) {
                    conn.feed(*dir, now, piece).unwrap();
                    out.extend(std::iter::from_fn(|| conn.poll_event()));
                }
            }
            Turn::Gap(dir, n) => conn.feed_gap(*dir, now, *n),
        }
        out.extend(std::iter::from_fn(|| conn.poll_event()));
    }
    conn.feed_eof(C, Timestamp(1_000));
    conn.feed_eof(S, Timestamp(1_000));
    out.extend(std::iter::from_fn(|| conn.poll_event()));
    (out, conn.stats())
}

/// The records and the server's skipped bytes, after checking that every chunking gives the
/// same events and counts; a `Resynced` event is only ever the server's.
fn gapped(turns: &[Turn], limits: Limits) -> (Vec<Command>, u64) {
    let (whole, stats) = run_with_gaps(turns, usize::MAX, limits);
    for chunk in [1, 2, 3, 7, 100] {
        let (events, s) = run_with_gaps(turns, chunk, limits);
        assert_eq!(events, whole, "chunks of {chunk}");
        assert_eq!(s, stats, "chunks of {chunk}");
    }
    let mut skipped = 0;
    let commands = whole
        .into_iter()
        .filter_map(|e| match e {
            Event::Mysql(c) => Some(*c),
            Event::Resynced {
                direction: S,
                skipped: n,
            } => {
                skipped += n;
                None
            }
            Event::Protocol(Protocol::Mysql) => None,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(skipped, stats.skipped_bytes);
    (commands, skipped)
}

/// A text row of two values: its number and a name whose length varies with it.
fn row(n: usize) -> Vec<u8> {
    let id = n.to_string();
    let name = format!("customer-{n}-{}", "x".repeat(n * 7 % 23));
    let mut out = vec![id.len() as u8];
    out.extend_from_slice(id.as_bytes());
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out
}

/// A reply of `rows` two-column rows from sequence id 1, ended by `last` (whose payload is
/// given), with the definitions' EOF unless `deprecate_eof`. Returns the bytes and where each
/// packet starts (the rows' first, and the terminator's last).
fn reply(rows: usize, deprecate_eof: bool, last: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut starts = Vec::new();
    let mut seq = 1u8;
    let mut put = |out: &mut Vec<u8>, payload: &[u8]| {
        out.extend(packet(payload, seq));
        seq = seq.wrapping_add(1);
    };
    put(&mut out, b"\x02");
    for name in ["id", "name"] {
        let mut def = b"\x03def\x04shop\x01t\x01t".to_vec();
        def.push(name.len() as u8);
        def.extend_from_slice(name.as_bytes());
        def.push(name.len() as u8);
        def.extend_from_slice(name.as_bytes());
        def.extend_from_slice(b"\x0c\x21\x00\x50\x00\x00\x00\xfd\x00\x00\x00\x00\x00");
        put(&mut out, &def);
    }
    if !deprecate_eof {
        put(&mut out, &[0xfe, 0, 0, 0x22, 0]);
    }
    for n in 1..=rows {
        starts.push(out.len());
        put(&mut out, &row(n));
    }
    starts.push(out.len());
    put(&mut out, last);
    (out, starts)
}

const EOF: &[u8] = &[0xfe, 0, 0, 0x22, 0];
const OK_END: &[u8] = &[0xfe, 0, 0, 0x22, 0, 0, 0];
const CAPS_DEPRECATE: u32 = CAPS | 0x0100_0000;

/// Login, a SELECT whose reply loses bytes `lost` (a range of `reply`), then a PING.
fn select_with_loss(caps: u32, reply: &[u8], lost: std::ops::Range<usize>) -> Vec<Turn> {
    let mut turns: Vec<Turn> = login(caps)
        .into_iter()
        .map(|(d, b)| Turn::Bytes(d, b))
        .collect();
    turns.push(Turn::Bytes(S, packet(OK, 2)));
    turns.push(Turn::Bytes(C, packet(b"\x03SELECT id, name FROM t", 0)));
    turns.push(Turn::Bytes(S, reply[..lost.start].to_vec()));
    turns.push(Turn::Gap(S, lost.len() as u64));
    turns.push(Turn::Bytes(S, reply[lost.end..].to_vec()));
    turns.push(Turn::Bytes(C, packet(b"\x0e", 0)));
    turns.push(Turn::Bytes(S, packet(OK, 1)));
    turns
}

/// The SELECT's record and the PING's, checking the login's and the PING's are intact.
fn select_and_ping(commands: &[Command]) -> (&Command, &Command) {
    let [login, select, ping] = commands else {
        panic!("{commands:#?}")
    };
    assert_eq!(
        summary(login),
        (Some("LOGIN"), Outcome::Ok, Some(0), None, 0)
    );
    assert_eq!(
        summary(ping),
        (Some("COM_PING"), Outcome::Ok, Some(0), None, 0)
    );
    assert_eq!(ping.flags, Flags::default());
    (select, ping)
}

#[test]
fn a_loss_inside_rows_resyncs_on_the_next_rows_and_keeps_the_eof_status() {
    let (bytes, starts) = reply(40, false, EOF);
    // From the middle of row 10 to the middle of row 20 (1-based): rows 1-9 and 21-40 are seen.
    let lost = starts[9] + 5..starts[19] + 6;
    let (commands, skipped) = gapped(&select_with_loss(CAPS, &bytes, lost), Limits::default());
    let (select, _) = select_and_ping(&commands);
    assert_eq!(
        summary(select),
        (Some("COM_QUERY"), Outcome::Ok, None, Some(2), 29)
    );
    assert!(select.flags.gap && !select.flags.truncated && !select.flags.missing_response);
    // What is skipped is the rest of row 20, and the reply ends with its EOF, at its time.
    assert_eq!(skipped, (starts[20] - starts[19] - 6) as u64);
    assert_eq!(select.response.unwrap().last, Timestamp(60));
}

#[test]
fn a_loss_inside_rows_with_deprecate_eof_ends_at_the_ok() {
    let (bytes, starts) = reply(40, true, OK_END);
    let lost = starts[3]..starts[30] + 2;
    let (commands, _) = gapped(
        &select_with_loss(CAPS_DEPRECATE, &bytes, lost),
        Limits::default(),
    );
    let (select, _) = select_and_ping(&commands);
    assert_eq!(
        summary(select),
        (Some("COM_QUERY"), Outcome::Ok, None, Some(2), 3 + 9)
    );
    assert!(select.flags.gap);
}

#[test]
fn a_loss_that_ends_at_the_terminator_still_gives_the_status() {
    for (caps, last) in [(CAPS, EOF), (CAPS_DEPRECATE, OK_END)] {
        let (bytes, starts) = reply(40, caps == CAPS_DEPRECATE, last);
        let terminator = *starts.last().unwrap();
        // Up to exactly the terminator; and up to one byte into the last row.
        for lost in [starts[25] + 3..terminator, starts[25] + 3..starts[39] + 1] {
            let (commands, skipped) = gapped(
                &select_with_loss(caps, &bytes, lost.clone()),
                Limits::default(),
            );
            let (select, _) = select_and_ping(&commands);
            assert_eq!(
                summary(select),
                (Some("COM_QUERY"), Outcome::Ok, None, Some(2), 25),
                "{lost:?}"
            );
            assert!(select.flags.gap);
            assert_eq!(skipped, (terminator - lost.end) as u64, "{lost:?}");
        }
    }
}

#[test]
fn a_loss_before_an_err_that_aborts_the_rows_gives_err() {
    let err = b"\xff\xe2\x04#21000Subquery returns more than 1 row";
    for deprecate in [false, true] {
        let caps = if deprecate { CAPS_DEPRECATE } else { CAPS };
        let (bytes, starts) = reply(30, deprecate, err);
        // Two rows after the loss: fewer than trusted alone, but the ERR ends the reply.
        let lost = starts[10] + 1..starts[28];
        let (commands, _) = gapped(&select_with_loss(caps, &bytes, lost), Limits::default());
        let (select, _) = select_and_ping(&commands);
        assert_eq!(
            summary(select),
            (Some("COM_QUERY"), Outcome::Err, None, Some(2), 12)
        );
        assert_eq!(select.error_code, Some(1250));
        assert_eq!(select.sqlstate(), Some("21000"));
        assert!(select.flags.gap);
    }
}

#[test]
fn packets_hidden_in_a_row_after_a_loss_are_not_taken_for_the_reply() {
    // The row the loss cuts holds what looks like an EOF (and after it, rows) in its value.
    let mut fake = packet(&[0xfe, 0, 0, 0x22, 0], 9);
    fake.extend(packet(b"\x011\x011", 10));
    let mut value = b"zz".to_vec();
    value.extend_from_slice(&fake);
    let mut hiding = vec![1, b'7', value.len() as u8];
    hiding.extend_from_slice(&value);
    let mut bytes = Vec::new();
    let mut seq = 1u8;
    for payload in [&b"\x02"[..], b"\x03def", b"\x03def", EOF] {
        bytes.extend(packet(payload, seq));
        seq += 1;
    }
    let mut starts = Vec::new();
    for n in 1..=12 {
        starts.push(bytes.len());
        let payload = if n == 7 { hiding.clone() } else { row(n) };
        bytes.extend(packet(&payload, seq));
        seq += 1;
    }
    bytes.extend(packet(EOF, seq));
    // The loss ends inside row 7, just before the fake packets.
    let lost = starts[2] + 2..starts[6] + 4 + 5;
    let (commands, skipped) = gapped(&select_with_loss(CAPS, &bytes, lost), Limits::default());
    let (select, _) = select_and_ping(&commands);
    assert_eq!(
        summary(select),
        (Some("COM_QUERY"), Outcome::Ok, None, Some(2), 2 + 5)
    );
    assert_eq!(skipped, (starts[7] - starts[6] - 9) as u64);
}

#[test]
fn junk_after_a_loss_is_skipped_and_the_next_reply_is_not_misread() {
    let (bytes, starts) = reply(20, false, EOF);
    // The rest of the reply is lost but for bytes that only look like packets: a header whose
    // payload is not a row, a chain broken by its sequence ids, a terminator followed by more.
    let mut junk = packet(b"\x05abc", 30);
    junk.extend(packet(b"\x011\x011", 31));
    junk.extend(packet(b"\x011\x011", 33));
    junk.extend(packet(EOF, 34));
    junk.extend(b"\x01\x02");
    let mut turns = select_with_loss(CAPS, &bytes, starts[5] + 2..bytes.len());
    let Turn::Bytes(_, tail) = &mut turns[6] else {
        panic!()
    };
    *tail = junk.clone();
    let (commands, skipped) = gapped(&turns, Limits::default());
    let (select, _) = select_and_ping(&commands);
    // Given up as before this resynchronisation existed: missing, flagged, its rows kept.
    assert_eq!(
        summary(select),
        (Some("COM_QUERY"), Outcome::Missing, None, Some(2), 5)
    );
    assert!(select.flags.gap && select.flags.truncated);
    assert_eq!(skipped, junk.len() as u64);
}

#[test]
fn a_loss_in_the_first_resultset_of_a_call_keeps_both() {
    let mut turns: Vec<Turn> = login(CAPS)
        .into_iter()
        .map(|(d, b)| Turn::Bytes(d, b))
        .collect();
    turns.push(Turn::Bytes(S, packet(OK, 2)));
    turns.push(Turn::Bytes(C, packet(b"\x03CALL p()", 0)));
    let mut seq = 1;
    let first = resultset(30, 0x000a, &mut seq);
    let mut rest = resultset(2, 0x000a, &mut seq);
    rest.extend(packet(OK, seq));
    // Rows of one value `1` are 6 bytes each, after 3 + 29 + 9 bytes of count, definition, EOF.
    let rows_at = 41;
    turns.push(Turn::Bytes(S, first[..rows_at + 6 * 4 + 3].to_vec()));
    turns.push(Turn::Gap(S, 6 * 20));
    turns.push(Turn::Bytes(
        S,
        [&first[rows_at + 6 * 24 + 3..], &rest[..]].concat(),
    ));
    let (commands, skipped) = gapped(&turns, Limits::default());
    let [_, call] = &commands[..] else {
        panic!("{commands:#?}")
    };
    assert_eq!(
        summary(call),
        (Some("COM_QUERY"), Outcome::Ok, Some(0), Some(1), 4 + 5 + 2)
    );
    assert_eq!(call.resultsets, 2);
    assert!(call.flags.gap);
    assert_eq!(skipped, 3);
}

#[test]
fn losses_every_few_bytes_still_find_the_final_terminator() {
    // As at a small snaplen: of each 60 bytes only the first 20 are captured.
    let (bytes, _) = reply(60, false, EOF);
    let mut turns: Vec<Turn> = login(CAPS)
        .into_iter()
        .map(|(d, b)| Turn::Bytes(d, b))
        .collect();
    turns.push(Turn::Bytes(S, packet(OK, 2)));
    turns.push(Turn::Bytes(C, packet(b"\x03SELECT id, name FROM t", 0)));
    let segments: Vec<&[u8]> = bytes.chunks(60).collect();
    for (i, segment) in segments.iter().enumerate() {
        let seen = if i + 1 == segments.len() {
            segment.len()
        } else {
            segment.len().min(20)
        };
        turns.push(Turn::Bytes(S, segment[..seen].to_vec()));
        if seen < segment.len() {
            turns.push(Turn::Gap(S, (segment.len() - seen) as u64));
        }
    }
    turns.push(Turn::Bytes(C, packet(b"\x0e", 0)));
    turns.push(Turn::Bytes(S, packet(OK, 1)));
    let last = bytes.len() % 60;
    assert!(last >= EOF.len() + 4, "the last segment holds the EOF");
    let (commands, _) = gapped(&turns, Limits::default());
    let (select, _) = select_and_ping(&commands);
    assert_eq!((select.outcome, select.flags.gap), (Outcome::Ok, true));
    // No three rows fit in what each segment shows: none is counted, only the outcome is known.
    assert_eq!(select.rows, 0);
}

#[test]
fn a_scan_stops_at_its_bounds() {
    let (bytes, starts) = reply(200, false, EOF);
    let lost = starts[5] + 2..starts[10] + 3;
    // A window too small for three rows: the rows after the loss are not counted, but the EOF
    // ending the reply is still found.
    let (commands, _) = gapped(
        &select_with_loss(CAPS, &bytes, lost.clone()),
        Limits::default().max_buffered(40),
    );
    let (select, _) = select_and_ping(&commands);
    assert_eq!((select.outcome, select.rows), (Outcome::Ok, 5));
    // A scan allowed too few bytes gives up as before.
    let (commands, _) = gapped(
        &select_with_loss(CAPS, &bytes, lost.clone()),
        Limits::default().max_unrecognized(10),
    );
    let (select, _) = select_and_ping(&commands);
    assert_eq!(select.outcome, Outcome::Missing);
    assert!(select.flags.gap && select.flags.truncated);
    // The window never holds more than its bound.
    let mut conn = Connection::new(Limits::default().max_buffered(4096));
    for turn in select_with_loss(CAPS, &bytes, lost) {
        match turn {
            Turn::Bytes(dir, b) => {
                for piece in b.chunks(1448) {
                    conn.feed(dir, Timestamp(0), piece).unwrap();
                    assert!(conn.buffered_bytes() < 4096 * 2 + 8192);
                }
            }
            Turn::Gap(dir, n) => conn.feed_gap(dir, Timestamp(0), n),
        }
    }
}

#[test]
fn a_snaplen_that_leaves_rows_of_every_segment_counts_them() {
    // 1024 bytes of each 1448-byte segment, as with DeepFlow's default payload truncation.
    let (bytes, starts) = reply(400, false, EOF);
    let mut turns: Vec<Turn> = login(CAPS)
        .into_iter()
        .map(|(d, b)| Turn::Bytes(d, b))
        .collect();
    turns.push(Turn::Bytes(S, packet(OK, 2)));
    turns.push(Turn::Bytes(C, packet(b"\x03SELECT id, name FROM t", 0)));
    let mut seen = Vec::new();
    for (i, segment) in bytes.chunks(1448).enumerate() {
        let kept = segment.len().min(1024);
        turns.push(Turn::Bytes(S, segment[..kept].to_vec()));
        seen.push(i * 1448..i * 1448 + kept);
        if kept < segment.len() {
            turns.push(Turn::Gap(S, (segment.len() - kept) as u64));
        }
    }
    turns.push(Turn::Bytes(C, packet(b"\x0e", 0)));
    turns.push(Turn::Bytes(S, packet(OK, 1)));
    // The rows a segment shows whole count when it shows three (they chain), or when they are
    // the first segment's (read in sync) or the last's (they chain to the EOF).
    let last = seen.len() - 1;
    let expected: usize = seen
        .iter()
        .enumerate()
        .map(|(k, range)| {
            let whole = starts
                .windows(2)
                .filter(|w| range.contains(&w[0]) && w[1] <= range.end)
                .count();
            if k == 0 || k == last || whole >= 3 {
                whole
            } else {
                0
            }
        })
        .sum();
    assert!(expected > 250 && expected < 400, "{expected}");
    let (commands, _) = gapped(&turns, Limits::default());
    let (select, _) = select_and_ping(&commands);
    assert_eq!(
        (select.outcome, select.rows, select.flags.gap),
        (Outcome::Ok, expected as u64, true)
    );
}

#[test]
fn a_packet_whose_first_byte_is_lost_is_never_guessed() {
    // A row's first byte: a row or the terminator? The rows after it say it was a row (and so
    // does the EOF right after the last one).
    let (bytes, starts) = reply(20, false, EOF);
    for row in [7, 19] {
        let lost = starts[row] + 4..starts[row] + 5;
        let (commands, skipped) = gapped(&select_with_loss(CAPS, &bytes, lost), Limits::default());
        let (select, _) = select_and_ping(&commands);
        assert_eq!(
            summary(select),
            (Some("COM_QUERY"), Outcome::Ok, None, Some(2), 20)
        );
        assert!(select.flags.gap);
        assert_eq!(skipped, 0);
    }
    // The EOF's first byte: nothing follows before the next command, so the outcome is lost.
    let terminator = *starts.last().unwrap();
    let lost = terminator + 4..terminator + 5;
    let (commands, _) = gapped(&select_with_loss(CAPS, &bytes, lost), Limits::default());
    let (select, _) = select_and_ping(&commands);
    assert_eq!(
        summary(select),
        (Some("COM_QUERY"), Outcome::Missing, None, Some(2), 20)
    );
    assert!(select.flags.gap && select.flags.truncated);
    // A reply's first byte (OK, ERR or a column count): missing, not OK.
    let err = packet(b"\xff\x7a\x04#42S02Table 'shop.x' doesn't exist", 1);
    let (commands, _) = gapped(&select_with_loss(CAPS, &err, 4..5), Limits::default());
    let (select, _) = select_and_ping(&commands);
    assert_eq!(select.outcome, Outcome::Missing);
    assert!(select.flags.gap && select.flags.truncated);
}

#[test]
fn a_lost_eof_after_the_definitions_teaches_nothing() {
    // Its first byte lost, the EOF after the definitions must not be read as "no EOF here"
    // (DEPRECATE_EOF), which would end every later resultset at its definitions' EOF.
    let (bytes, starts) = reply(4, false, EOF);
    let defs_eof = starts[0] - 9;
    let mut turns = select_with_loss(CAPS, &bytes, defs_eof + 4..defs_eof + 5);
    turns.push(Turn::Bytes(C, packet(b"\x03SELECT id, name FROM t", 0)));
    turns.push(Turn::Bytes(S, bytes.clone()));
    let (commands, _) = gapped(&turns, Limits::default());
    let [_, first, _, again] = &commands[..] else {
        panic!("{commands:#?}")
    };
    assert_eq!(
        (first.outcome, first.rows, first.flags.gap),
        (Outcome::Ok, 4, true)
    );
    assert_eq!(
        summary(again),
        (Some("COM_QUERY"), Outcome::Ok, None, Some(2), 4)
    );
    assert_eq!(again.flags, Flags::default());
}
