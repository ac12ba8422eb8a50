//! MySQL captures recorded for losses inside a resultset (`tests/data/foreign/mysql`, README
//! there): a MariaDB session with the mariadb CLI (classic EOF terminators) and one with a client
//! that negotiates DEPRECATE_EOF (OK terminators, and a query the server aborts with ERR after
//! 299 rows), each around a 400-row `SELECT * FROM t`; and copies derived by `thin.py` that lose
//! frames inside the rows, lose everything up to the terminator, or are cut at a snaplen.
//!
//! A damaged command keeps the outcome its terminator gives, the rows that could be seen (the
//! figures `thin.py` prints, from its own model of which rows are visible) and the `gap` flag;
//! every other command is decoded exactly as in the whole capture.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use common::decode;
use examples::meshsniff::Totals;
use l7decode::mysql::{Command, Outcome};

/// The records of a capture of this directory, and its totals.
fn commands(name: &str) -> (Totals, Vec<Command>) {
    let (totals, records) = decode(&format!("tests/data/foreign/mysql/{name}.pcap.gz"));
    let commands = records
        .iter()
        .map(|r| {
            assert_eq!(r.server.port(), 3391, "{name}");
            r.mysql().expect("a MySQL record").clone()
        })
        .collect();
    (totals, commands)
}

/// A record on one line: command, status, SQL, rows, columns, error code, flags (`g`ap,
/// `t`runcated, `m`issing response).
fn line(c: &Command) -> String {
    let f = c.flags;
    let flags: String = [(f.gap, 'g'), (f.truncated, 't'), (f.missing_response, 'm')]
        .iter()
        .filter_map(|(on, ch)| on.then_some(*ch))
        .collect();
    assert!(
        !(f.orphan || f.timed_out || f.upgraded || f.te_and_cl),
        "{c:?}"
    );
    let err = c.error_code.map_or(String::new(), |e| format!(" err={e}"));
    format!(
        "{} {} {:?} rows={} fields={}{err} [{flags}]",
        c.name().unwrap(),
        c.outcome.as_str(),
        c.query().unwrap_or(""),
        c.rows,
        c.num_fields.map_or("-".to_owned(), |n| n.to_string()),
    )
}

fn lines(commands: &[Command]) -> Vec<String> {
    commands.iter().map(line).collect()
}

const CLI: [&str; 7] = [
    r#"LOGIN OK "" rows=0 fields=- []"#,
    r#"COM_QUERY OK "SELECT COUNT(*) FROM t" rows=1 fields=1 []"#,
    r#"COM_QUERY OK "SELECT name FROM t WHERE id = 7" rows=1 fields=1 []"#,
    r#"COM_QUERY OK "SELECT * FROM t" rows=400 fields=3 []"#,
    r#"COM_QUERY OK "SELECT note FROM t WHERE id = 400" rows=1 fields=1 []"#,
    r#"COM_QUERY OK "SELECT 'done'" rows=1 fields=1 []"#,
    r#"COM_QUIT NO_RESPONSE_EXPECTED "" rows=0 fields=- []"#,
];

const ABORT: &str = "SELECT id, name, (SELECT k FROM u WHERE u.k = t.id) AS dup FROM t";

/// The DEPRECATE_EOF session, with the rows of its two long replies and their flags.
fn deprecate_eof(select: (u64, &str), abort: (&str, u64, &str)) -> Vec<String> {
    let (status, rows, flags) = abort;
    let err = if status == "ERR" { " err=1242" } else { "" };
    vec![
        r#"LOGIN OK "" rows=0 fields=- []"#.to_owned(),
        r#"COM_QUERY OK "SELECT COUNT(*) FROM t" rows=1 fields=1 []"#.to_owned(),
        format!(
            r#"COM_QUERY OK "SELECT * FROM t" rows={} fields=3 [{}]"#,
            select.0, select.1
        ),
        format!(r#"COM_QUERY {status} "{ABORT}" rows={rows} fields=3{err} [{flags}]"#),
        r#"COM_QUERY OK "SELECT 'done'" rows=1 fields=1 []"#.to_owned(),
        r#"COM_QUIT NO_RESPONSE_EXPECTED "" rows=0 fields=- []"#.to_owned(),
    ]
}

/// The CLI session with the 400-row reply's rows and flags.
fn cli(rows: u64, flags: &str) -> Vec<String> {
    let mut out: Vec<String> = CLI.iter().map(|s| (*s).to_owned()).collect();
    out[3] = format!(r#"COM_QUERY OK "SELECT * FROM t" rows={rows} fields=3 [{flags}]"#);
    out
}

#[test]
fn the_whole_captures_decode_every_row() {
    let (totals, got) = commands("cli");
    assert_eq!(lines(&got), CLI);
    assert_eq!((totals.gap_bytes, totals.skipped_bytes), (0, 0));
    assert_eq!(got[3].response.unwrap().bytes, 32_795);
    let (totals, got) = commands("deprecate_eof");
    assert_eq!(lines(&got), deprecate_eof((400, ""), ("ERR", 299, "")));
    assert_eq!((totals.gap_bytes, totals.skipped_bytes), (0, 0));
    assert_eq!(
        got[3].error_message(),
        Some("Subquery returns more than 1 row")
    );
}

/// A damaged copy against its whole capture: the records, the bytes lost and skipped; every
/// command the loss did not touch is decoded exactly as in the whole capture (times and byte
/// counts included), and those it touched keep their outcome and times and see fewer rows.
fn damaged(name: &str, whole: &str, expected: &[String], lost: u64, skipped: u64) {
    let (totals, got) = commands(name);
    assert_eq!(lines(&got), expected, "{name}");
    assert_eq!(
        (totals.gap_bytes, totals.skipped_bytes),
        (lost, skipped),
        "{name}"
    );
    let (_, all) = commands(whole);
    assert_eq!(got.len(), all.len(), "{name}");
    for (c, w) in got.iter().zip(&all) {
        if !c.flags.gap {
            assert_eq!(c, w, "{name}");
            continue;
        }
        assert_eq!(
            (c.outcome, c.error_code, c.error_message()),
            (w.outcome, w.error_code, w.error_message()),
            "{name}"
        );
        assert_eq!((c.request, c.query()), (w.request, w.query()), "{name}");
        // The reply's first packet came before the loss, its terminator after it.
        let (r, wr) = (c.response.unwrap(), w.response.unwrap());
        assert_eq!((r.first, r.last), (wr.first, wr.last), "{name}");
        assert!(r.bytes < wr.bytes && c.rows < w.rows, "{name}");
        assert!(!c.flags.truncated && !c.flags.missing_response, "{name}");
    }
}

#[test]
fn frames_lost_inside_the_rows_leave_the_outcome_and_the_rows_after_them() {
    // Three data frames from the middle of the rows: 40 rows lost, the rest of the one the loss
    // cut skipped, the rows after it read again up to the EOF.
    damaged("cli_lost_mid", "cli", &cli(360, "g"), 3352, 5);
    // The same with OK terminators; and in the reply the server aborts, the ERR still ends it.
    damaged(
        "deprecate_eof_lost_mid",
        "deprecate_eof",
        &deprecate_eof((360, "g"), ("ERR", 97, "g")),
        3352 + 4344,
        86 + 20,
    );
}

#[test]
fn a_loss_that_ends_at_the_terminator_still_gives_the_outcome() {
    // From the middle of the rows up to the EOF itself (its frame begins later in the sequence
    // space): nothing to skip, the EOF read where the reply must end.
    damaged("cli_lost_to_end", "cli", &cli(191, "g"), 18_026, 0);
    // The same up to the OK ending the 400 rows, and up to the ERR aborting the 299.
    damaged(
        "deprecate_eof_lost_to_end",
        "deprecate_eof",
        &deprecate_eof((191, "g"), ("ERR", 136, "g")),
        18_013 + 3576,
        0,
    );
}

/// A snaplen copy: every command is there, with its whole capture's outcome where the reply's
/// terminator shows whole, `Missing` (flagged `gap` and `truncated`) where it does not; never
/// another outcome, never more rows.
fn snapped(name: &str, whole: &str, expected: &[String]) {
    let (_, got) = commands(name);
    assert_eq!(lines(&got), expected, "{name}");
    let (_, all) = commands(whole);
    for c in &got {
        let w = all
            .iter()
            .find(|w| w.request.unwrap().last == c.request.unwrap().last)
            .unwrap();
        assert!(w.query().unwrap_or("").starts_with(c.query().unwrap_or("")));
        assert!(c.rows <= w.rows, "{name}");
        if c.outcome == Outcome::Missing {
            assert!(c.flags.gap && c.flags.truncated, "{name}");
        } else {
            assert_eq!(
                (c.outcome, c.error_code),
                (w.outcome, w.error_code),
                "{name}"
            );
            let last = |c: &Command| c.response.map(|r| r.last);
            assert_eq!(last(c), last(w), "{name}");
        }
    }
}

#[test]
fn at_a_snaplen_a_visible_terminator_gives_the_outcome() {
    // 96 bytes a frame (30 of payload): every reply's last segment is longer, so no outcome is
    // known; the commands are all there (their texts cut), the login is not (its greeting is
    // cut), and nothing is guessed.
    let missing =
        |q: &str, fields: u64| format!(r#"COM_QUERY MISSING "{q}" rows=0 fields={fields} [gt]"#);
    let quit = r#"COM_QUIT NO_RESPONSE_EXPECTED "" rows=0 fields=- []"#.to_owned();
    snapped(
        "cli_snap96",
        "cli",
        &[
            missing("SELECT COUNT(*) FROM t", 1),
            missing("SELECT name FROM t WHERE ", 1),
            missing("SELECT * FROM t", 3),
            missing("SELECT note FROM t WHERE ", 1),
            missing("SELECT 'done'", 1),
            quit.clone(),
        ],
    );
    snapped(
        "deprecate_eof_snap96",
        "deprecate_eof",
        &[
            missing("SELECT COUNT(*) FROM t", 1),
            missing("SELECT * FROM t", 3),
            missing("SELECT id, name, (SELECT ", 3),
            missing("SELECT 'done'", 1),
            quit,
        ],
    );
    // 300 bytes (234 of payload): short replies whole; the 400 rows' last segment shows whole,
    // so their outcome is known, with the rows that segment shows; the aborted reply's last
    // segment does not, so it stays missing.
    snapped("cli_snap300", "cli", &cli(9, "g"));
    snapped(
        "deprecate_eof_snap300",
        "deprecate_eof",
        &deprecate_eof((9, "g"), ("MISSING", 45, "gt")),
    );
    // 1090 bytes (1024 of payload, DeepFlow's default payload truncation): the rows of every
    // segment are found again, and both terminators show.
    snapped("cli_snap1090", "cli", &cli(264, "g"));
    snapped(
        "deprecate_eof_snap1090",
        "deprecate_eof",
        &deprecate_eof((263, "g"), ("ERR", 216, "g")),
    );
}
