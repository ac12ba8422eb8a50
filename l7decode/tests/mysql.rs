//! MySQL through the connection decoder: the connection phase (auth switch, SSLRequest), reply
//! shapes (LOCAL INFILE, multi-resultsets, progress reports, metadata-less resultsets, the
//! statistics string), the statement table's bound, and the same events in any chunking.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;
use common::packet;

use l7decode::mysql::{Command, Status};
use l7decode::{Direction, Event, Limits, Protocol};

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

fn summary(c: &Command) -> (Option<&str>, Status, Option<u64>, Option<u64>, u64) {
    (c.name(), c.status, c.affected_rows, c.num_fields, c.rows)
}

#[test]
fn debug_output_hides_sql_literals_and_error_texts() {
    let mut conn = l7decode::Connection::new(Limits::default());
    let query = b"\x03SELECT * FROM users WHERE password = 'hunter2'";
    conn.feed(C, l7decode::Timestamp(1), &packet(query, 0))
        .unwrap();
    let error = b"\xff\x26\x04#23000Duplicate entry 'hunter2' for key 'pw'";
    conn.feed(S, l7decode::Timestamp(2), &packet(error, 1))
        .unwrap();
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
        (Some("LOGIN"), Status::Ok, Some(0), None, 0)
    );
    assert_eq!(
        (got[0].user(), got[0].schema()),
        (Some("app"), Some("shop"))
    );
    assert_eq!(got[0].response.unwrap().bytes, 27 + 2 + 7);
    assert_eq!(
        summary(&got[1]),
        (Some("COM_PING"), Status::Ok, Some(0), None, 0)
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
        (Some("COM_QUERY"), Status::Ok, Some(2), None, 0)
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
        (Some("COM_QUERY"), Status::Ok, Some(0), Some(1), 5)
    );
    assert_eq!(got[1].resultsets, 2);
    assert_eq!(
        summary(&got[2]),
        (Some("COM_QUERY"), Status::Ok, Some(0), None, 0)
    );
    assert_eq!(got[2].error_code, None);
    assert_eq!(
        summary(&got[3]),
        (Some("COM_STATISTICS"), Status::Ok, None, None, 0)
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
        (Some("COM_QUERY"), Status::Ok, None, Some(2), 2)
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
