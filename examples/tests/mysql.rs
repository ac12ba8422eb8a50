//! MySQL/MariaDB through the main job's pipeline: every command of the shared captures (the
//! mariadb CLI, Connector/Python pure and C, the compressed protocol, TLS) must match its truth
//! file, timestamps to the microsecond; DeepFlow's MySQL captures decode as their bytes say; and
//! damaged copies (cut to start at every frame, each data frame lost, a snaplen) never invent or
//! mis-pair a command.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use common::{
    analyze_records, decode, each_data_frame_lost, micros, micros_of, pcap_records, truth,
    truth_by_request,
};
use examples::meshsniff::Record;
use l7decode::mysql::{Command, Outcome};

/// The records' commands in order of their command's last byte (the truth's order).
fn commands(records: &[Record]) -> Vec<(&Record, &Command)> {
    let mut got: Vec<(&Record, &Command)> = records
        .iter()
        .map(|r| (r, r.mysql().expect("a MySQL record")))
        .collect();
    got.sort_by_key(|(r, c)| (c.request.map(|s| s.last.0), r.client.to_string()));
    got
}

fn summary(c: &Command) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?}",
        c.name(),
        c.outcome,
        c.query().map(|q| q.chars().take(40).collect::<String>()),
        c.error_code,
        c.flags
    )
}

/// Every field the truth names. `compressed`: tshark reports a reply's first packet only once the
/// compressed frame holding it is complete, while the first byte arrived earlier; the decoder
/// reports the first byte's arrival, so there it must be no later than the truth's.
fn assert_matches(r: &Record, c: &Command, e: &serde_json::Value, what: &str, compressed: bool) {
    let id = format!("{what}: {} {}", e["command"], e["query"]);
    assert_eq!(r.client.to_string(), e["client"].as_str().unwrap(), "{id}");
    assert_eq!(r.server.to_string(), e["server"].as_str().unwrap(), "{id}");
    assert_eq!(c.name(), e["command"].as_str(), "{id}");
    assert_eq!(c.code.map(u64::from), e["command_code"].as_u64(), "{id}");
    assert_eq!(c.outcome.as_str(), e["status"].as_str().unwrap(), "{id}");
    if let Some(q) = e["query"].as_str() {
        let ours: String = c.query().unwrap().chars().take(512).collect();
        assert_eq!(ours, q, "{id}");
        assert_eq!(
            c.query_truncated() || c.query().unwrap().chars().count() > 512,
            e["query_truncated"].as_bool().unwrap_or(false),
            "{id}"
        );
    }
    for (field, ours) in [
        ("stmt_id", c.stmt_id),
        ("prepared_stmt_id", c.prepared_stmt_id),
    ] {
        assert_eq!(ours.map(u64::from), e[field].as_u64(), "{id} {field}");
    }
    assert_eq!(
        c.error_code.map(u64::from),
        e["error_code"].as_u64(),
        "{id}"
    );
    assert_eq!(c.error_message(), e["error_message"].as_str(), "{id}");
    if let Some(rows) = e["affected_rows"].as_u64() {
        assert_eq!(c.affected_rows, Some(rows), "{id}");
    }
    if let Some(fields) = e["num_fields"].as_u64() {
        assert_eq!(c.num_fields, Some(fields), "{id}");
        // tshark counts the values of text rows (binary rows, from EXECUTE, it does not).
        if c.code == Some(0x03) {
            let values = e["row_text_values"].as_u64().unwrap();
            assert_eq!(c.rows * fields, values, "{id} rows");
        }
    }
    if c.code.is_none() {
        assert_eq!(c.user(), e["user"].as_str(), "{id}");
        assert_eq!(c.schema(), e["schema"].as_str(), "{id}");
        if let Some(version) = c.server_version() {
            assert!(version.starts_with("5.5.5-10.11.19-MariaDB"), "{id}");
        }
    }
    if let Some(bytes) = e["req_payload_bytes"].as_u64() {
        assert_eq!(c.request.unwrap().bytes, bytes, "{id}");
    }
    let req = c.request.unwrap();
    assert_eq!(
        micros_of(req.last),
        micros(e["req_time"].as_f64().unwrap()),
        "{id}"
    );
    if let Some(first) = e["req_first_time"].as_f64() {
        assert_eq!(micros_of(req.first), micros(first), "{id}");
    }
    let resp = c.response.map(|s| (micros_of(s.first), micros_of(s.last)));
    let expected = e["resp_first_time"]
        .as_f64()
        .map(|f| (micros(f), micros(e["resp_last_time"].as_f64().unwrap())));
    match (resp, expected) {
        (Some((first, last)), Some((t_first, t_last))) if compressed => {
            assert_eq!(last, t_last, "{id}");
            assert!(first <= t_first && first >= micros_of(req.last), "{id}");
        }
        (ours, theirs) => assert_eq!(ours, theirs, "{id}"),
    }
    assert!(!c.flags.gap && !c.flags.truncated, "{id}");
}

#[test]
fn every_command_of_the_shared_captures_matches_the_truth() {
    for name in [
        "mysql_cli",
        "mysql_stmt",
        "mysql_deprecate_eof",
        "mysql_compressed",
    ] {
        let (totals, records) = decode(&format!("tests/data/mysql/{name}.pcap"));
        assert_eq!(totals.gap_bytes + totals.skipped_bytes, 0, "{name}");
        let expected = truth_by_request(&format!("tests/data/mysql/{name}.truth.json"));
        let got = commands(&records);
        assert_eq!(
            got.len(),
            expected.len(),
            "{name}: {:#?}",
            got.iter().map(|(_, c)| summary(c)).collect::<Vec<_>>()
        );
        for ((r, c), e) in got.into_iter().zip(&expected) {
            assert_matches(r, c, e, name, name == "mysql_compressed");
        }
    }
}

#[test]
fn execute_records_carry_their_prepared_sql() {
    let (_, records) = decode("tests/data/mysql/mysql_stmt.pcap");
    let mut prepared = std::collections::HashMap::new();
    let mut executes = 0;
    for (_, c) in commands(&records) {
        if let Some(id) = c.prepared_stmt_id {
            prepared.insert(id, c.query().unwrap().to_owned());
        }
        if c.code == Some(0x17) {
            executes += 1;
            let id = c.stmt_id.unwrap();
            assert_eq!(
                c.query(),
                prepared.get(&id).map(String::as_str),
                "EXECUTE {id}"
            );
        }
    }
    assert_eq!(executes, 8);
}

#[test]
fn tls_after_an_ssl_request_is_reported_not_parsed() {
    let (totals, records) = decode("tests/data/mysql/mysql_tls.pcap");
    let t = truth("tests/data/mysql/mysql_tls.truth.json");
    let tls = t["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ssl_request"].as_bool() == Some(true))
        .count() as u64;
    assert_eq!(tls, 2);
    assert!(records.is_empty(), "{records:?}");
    assert_eq!(totals.tls_connections, tls);
    assert_eq!(totals.skipped_bytes, 0);
}

/// The fixtures' rule for a capture cut to start at frame `first` (`derive_truth.py`): the
/// commands whose request starts in the kept frames, unchanged.
fn truth_from_frame(expected: &[serde_json::Value], first: u64) -> Vec<serde_json::Value> {
    expected
        .iter()
        .filter(|t| {
            t["req_first_frame"]
                .as_u64()
                .or_else(|| t["req_frame"].as_u64())
                .unwrap()
                >= first
        })
        .cloned()
        .collect()
}

#[test]
fn mid_stream_starts_decode_every_command_they_hold_exactly() {
    for name in [
        "mysql_cli",
        "mysql_stmt",
        "mysql_deprecate_eof",
        "mysql_compressed",
    ] {
        let (header, records) = pcap_records(&format!("tests/data/mysql/{name}.pcap"));
        let all = truth_by_request(&format!("tests/data/mysql/{name}.truth.json"));
        for skip in 1..records.len() {
            let what = format!("{name} without its first {skip} frames");
            let got = analyze_records(&header, &records[skip..]);
            let expected = truth_from_frame(&all, skip as u64 + 1);
            let got = commands(&got);
            assert_eq!(
                got.len(),
                expected.len(),
                "{what}: {:#?}",
                got.iter().map(|(_, c)| summary(c)).collect::<Vec<_>>()
            );
            for ((r, c), e) in got.into_iter().zip(&expected) {
                assert_matches(r, c, e, &what, name == "mysql_compressed");
            }
        }
    }
}

/// Whether frame `frame` (1-based, sent from port `from` to port `to`) carried part of command
/// `t`: its request's frames, or on the server's side anything after its request up to its
/// reply's last frame.
fn touches(t: &serde_json::Value, frame: u64, (from, to): (u16, u16)) -> bool {
    let port = |field: &str| -> u16 {
        let addr: std::net::SocketAddr = t[field].as_str().unwrap().parse().unwrap();
        addr.port()
    };
    let req_last = t["req_frame"].as_u64().unwrap();
    let req_first = t["req_first_frame"].as_u64().unwrap_or(req_last);
    if (from, to) == (port("client"), port("server")) {
        (req_first..=req_last).contains(&frame)
    } else if (from, to) == (port("server"), port("client")) {
        t["resp_last_frame"]
            .as_u64()
            .is_some_and(|last| (req_last + 1..=last).contains(&frame))
    } else {
        false
    }
}

#[test]
fn a_lost_segment_damages_only_its_own_command() {
    for name in [
        "mysql_cli",
        "mysql_stmt",
        "mysql_deprecate_eof",
        "mysql_compressed",
    ] {
        let (header, records) = pcap_records(&format!("tests/data/mysql/{name}.pcap"));
        let truth = truth_by_request(&format!("tests/data/mysql/{name}.truth.json"));
        each_data_frame_lost(&header, &records, |frame, ends, got| {
            let what = format!("{name} frame {frame} dropped");
            let (touched, intact): (Vec<_>, Vec<_>) =
                truth.iter().partition(|t| touches(t, frame, ends));
            let got = commands(&got);
            let (damaged, whole): (Vec<_>, Vec<_>) = got.into_iter().partition(|(_, c)| {
                let f = c.flags;
                f.gap || f.truncated || f.missing_response || c.outcome == Outcome::Missing
            });
            // Every command the lost frame did not carry is decoded exactly, unflagged.
            assert_eq!(
                whole.len(),
                intact.len(),
                "{what}: {:#?}",
                whole
                    .iter()
                    .chain(&damaged)
                    .map(|(_, c)| summary(c))
                    .collect::<Vec<_>>()
            );
            for ((r, c), e) in whole.into_iter().zip(&intact) {
                assert_matches(r, c, e, &what, name == "mysql_compressed");
            }
            // The commands it carried are reported flagged or not at all, never as another.
            assert!(
                damaged.len() <= touched.len(),
                "{what}: {} damaged",
                damaged.len()
            );
            for (_, c) in damaged {
                let real = touched.iter().any(|e| {
                    c.name() == e["command"].as_str()
                        && c.query().is_none_or(|q| {
                            e["query"]
                                .as_str()
                                .is_none_or(|t| t.starts_with(q) || q.starts_with(t))
                        })
                });
                assert!(real, "{what}: {}", summary(c));
            }
        });
    }
}

#[test]
fn a_snaplen_keeps_every_command_and_flags_what_it_cut() {
    for name in [
        "mysql_cli",
        "mysql_stmt",
        "mysql_deprecate_eof",
        "mysql_compressed",
    ] {
        let (header, records) = pcap_records(&format!("tests/data/mysql/{name}.pcap"));
        // 74 bytes of TCP payload per frame, as in the fixtures' `*_snap128` captures: packet
        // headers and short packets survive, long texts and resultsets do not.
        let cut: Vec<_> = records
            .iter()
            .map(|(h, d)| (h.clone(), d[..d.len().min(140)].to_vec()))
            .collect();
        let got = analyze_records(&header, &cut);
        let expected = truth_by_request(&format!("tests/data/mysql/{name}.truth.json"));
        let got = commands(&got);
        let what = format!("{name} at snaplen 140");
        assert_eq!(
            got.len(),
            expected.len(),
            "{what}: {:#?}",
            got.iter().map(|(_, c)| summary(c)).collect::<Vec<_>>()
        );
        let mut exact = 0;
        for ((r, c), e) in got.into_iter().zip(&expected) {
            let id = format!("{what}: {} {}", e["command"], e["query"]);
            assert_eq!(r.client.to_string(), e["client"].as_str().unwrap(), "{id}");
            assert_eq!(c.name(), e["command"].as_str(), "{id}");
            assert_eq!(c.stmt_id.map(u64::from), e["stmt_id"].as_u64(), "{id}");
            if let Some(q) = e["query"].as_str() {
                let ours = c.query().unwrap();
                assert!(q.starts_with(ours), "{id}: {ours:?}");
                assert_eq!(c.query_truncated(), ours.len() < q.len(), "{id}");
            }
            assert_eq!(
                micros_of(c.request.unwrap().last),
                micros(e["req_time"].as_f64().unwrap()),
                "{id}"
            );
            // The reply's outcome as the truth has it; or, where the cut took packet boundaries
            // with it, reported missing and flagged, never guessed.
            if c.outcome.as_str() == e["status"].as_str().unwrap() {
                exact += 1;
                assert_eq!(
                    c.error_code.map(u64::from),
                    e["error_code"].as_u64(),
                    "{id}"
                );
                if c.outcome != Outcome::NoResponseExpected && !c.flags.gap {
                    assert_matches(r, c, e, &what, name == "mysql_compressed");
                }
            } else {
                assert_eq!(c.outcome, Outcome::Missing, "{id}");
                assert!(c.flags.gap && c.flags.truncated, "{id}");
            }
            if let (Some(ours), Some(theirs)) = (c.num_fields, e["num_fields"].as_u64()) {
                assert_eq!(ours, theirs, "{id}");
            }
        }
        assert!(
            exact * 2 > expected.len(),
            "{what}: only {exact} outcomes kept"
        );
    }
}

/// (command, status, query's first 40 characters, error code, columns, rows).
type Expected = (
    &'static str,
    &'static str,
    &'static str,
    Option<u16>,
    Option<u64>,
    u64,
);

/// DeepFlow's public MySQL captures (`agent/resources/test/flow_generator/mysql`), several
/// joined mid-connection, two in the compressed protocol. Command, query, status and error code
/// agree with DeepFlow's own `.result` files wherever DeepFlow decodes a packet; where it cannot
/// (replies split over segments, compressed frames: its `partial-packet-compressed` result is
/// nine "ok" fragments) the counts are read from the bytes.
#[test]
fn deepflow_mysql_captures() {
    let cases: &[(&str, &[Expected])] = &[
        (
            "binary-in-sql",
            &[
                (
                    "COM_QUERY",
                    "OK",
                    "set @@SQL_SELECT_LIMIT=60001",
                    None,
                    None,
                    0,
                ),
                (
                    "COM_QUERY",
                    "OK",
                    "INSERT INTO XX_XXXXXXX_XXX_XXXX (message",
                    None,
                    None,
                    0,
                ),
            ],
        ),
        (
            "large-response",
            &[
                (
                    "COM_QUERY",
                    "OK",
                    "SELECT * FROM `az_controller_connection`",
                    None,
                    Some(5),
                    3,
                ),
                (
                    "COM_QUERY",
                    "OK",
                    "SELECT * FROM `controller`",
                    None,
                    Some(21),
                    3,
                ),
            ],
        ),
        (
            "mysql-compressed-response",
            &[(
                "COM_QUERY",
                "OK",
                "SELECT * FROM `az_controller_connection`",
                None,
                Some(5),
                5,
            )],
        ),
        (
            "mysql-error",
            &[
                ("LOGIN", "OK", "", None, None, 0),
                (
                    "COM_QUERY",
                    "OK",
                    "select @@version_comment limit 1",
                    None,
                    Some(1),
                    1,
                ),
                ("COM_QUERY", "OK", "SELECT DATABASE()", None, Some(1), 1),
                ("COM_INIT_DB", "ERR", "", Some(1049), None, 0),
                ("COM_QUIT", "NO_RESPONSE_EXPECTED", "", None, None, 0),
            ],
        ),
        (
            "mysql-exec",
            &[
                (
                    "COM_STMT_PREPARE",
                    "OK",
                    "INSERT INTO `controller` (`cpu_num`,`mem",
                    None,
                    Some(0),
                    0,
                ),
                (
                    "COM_STMT_EXECUTE",
                    "OK",
                    "INSERT INTO `controller` (`cpu_num`,`mem",
                    None,
                    None,
                    0,
                ),
            ],
        ),
        (
            "mysql-login-error",
            &[("LOGIN", "ERR", "", Some(1040), None, 0)],
        ),
        (
            "mysql-statement",
            &[
                (
                    "COM_STMT_PREPARE",
                    "OK",
                    "SELECT * FROM `controller` WHERE name = ",
                    None,
                    Some(17),
                    0,
                ),
                (
                    "COM_STMT_EXECUTE",
                    "OK",
                    "SELECT * FROM `controller` WHERE name = ",
                    None,
                    Some(17),
                    1,
                ),
                (
                    "COM_STMT_CLOSE",
                    "NO_RESPONSE_EXPECTED",
                    "SELECT * FROM `controller` WHERE name = ",
                    None,
                    None,
                    0,
                ),
                (
                    "COM_STMT_PREPARE",
                    "OK",
                    "SELECT * FROM `domain` WHERE enabled = ?",
                    None,
                    Some(18),
                    0,
                ),
                (
                    "COM_STMT_EXECUTE",
                    "OK",
                    "SELECT * FROM `domain` WHERE enabled = ?",
                    None,
                    Some(18),
                    4,
                ),
                (
                    "COM_STMT_CLOSE",
                    "NO_RESPONSE_EXPECTED",
                    "SELECT * FROM `domain` WHERE enabled = ?",
                    None,
                    None,
                    0,
                ),
                (
                    "COM_STMT_PREPARE",
                    "OK",
                    "SELECT * FROM `domain` WHERE lcuuid = ? ",
                    None,
                    Some(18),
                    0,
                ),
                (
                    "COM_STMT_PREPARE",
                    "OK",
                    "SELECT * FROM `domain` WHERE lcuuid = ? ",
                    None,
                    Some(18),
                    0,
                ),
                (
                    "COM_STMT_PREPARE",
                    "OK",
                    "SELECT * FROM `sub_domain` WHERE domain ",
                    None,
                    Some(14),
                    0,
                ),
                (
                    "COM_STMT_PREPARE",
                    "OK",
                    "SELECT * FROM `domain` WHERE lcuuid = ? ",
                    None,
                    Some(18),
                    0,
                ),
                (
                    "COM_QUERY",
                    "MISSING",
                    "SELECT * FROM `controller`",
                    None,
                    None,
                    0,
                ),
                (
                    "COM_STMT_PREPARE",
                    "MISSING",
                    "SELECT * FROM `sub_domain` WHERE domain ",
                    None,
                    None,
                    0,
                ),
                (
                    "COM_QUERY",
                    "MISSING",
                    "SELECT * FROM `controller`",
                    None,
                    None,
                    0,
                ),
            ],
        ),
        (
            "mysql-table-create",
            &[
                ("LOGIN", "OK", "", None, None, 0),
                (
                    "COM_QUERY",
                    "OK",
                    "select @@version_comment limit 1",
                    None,
                    Some(1),
                    1,
                ),
                ("COM_QUERY", "OK", "SELECT DATABASE()", None, Some(1), 1),
                ("COM_INIT_DB", "OK", "", None, None, 0),
                ("COM_QUERY", "OK", "show databases", None, Some(1), 31),
                ("COM_QUERY", "OK", "show tables", None, Some(1), 1),
                ("COM_FIELD_LIST", "OK", "", None, None, 0),
                (
                    "COM_QUERY",
                    "OK",
                    "create table `test_table_2`( `id` int un",
                    None,
                    None,
                    0,
                ),
                ("COM_QUIT", "NO_RESPONSE_EXPECTED", "", None, None, 0),
            ],
        ),
        (
            "mysql-table-select",
            &[
                ("LOGIN", "OK", "", None, None, 0),
                (
                    "COM_QUERY",
                    "OK",
                    "select @@version_comment limit 1",
                    None,
                    Some(1),
                    1,
                ),
                (
                    "COM_QUERY",
                    "OK",
                    "select * from test_table",
                    None,
                    Some(3),
                    3,
                ),
                ("COM_QUIT", "NO_RESPONSE_EXPECTED", "", None, None, 0),
            ],
        ),
        (
            "partial-packet-compressed",
            &[
                (
                    "COM_QUERY",
                    "OK",
                    "SELECT * FROM `process` WHERE `process`.",
                    None,
                    Some(24),
                    1992,
                ),
                ("COM_QUERY", "OK", "SELECT * FROM `vip`", None, Some(7), 0),
            ],
        ),
        (
            "truncate-1024",
            &[
                (
                    "COM_STMT_PREPARE",
                    "OK",
                    "SELECT * FROM `domain` WHERE state != ?",
                    None,
                    Some(21),
                    0,
                ),
                (
                    "COM_STMT_EXECUTE",
                    "OK",
                    "SELECT * FROM `domain` WHERE state != ?",
                    None,
                    Some(21),
                    3,
                ),
                (
                    "COM_STMT_CLOSE",
                    "NO_RESPONSE_EXPECTED",
                    "SELECT * FROM `domain` WHERE state != ?",
                    None,
                    None,
                    0,
                ),
                (
                    "COM_QUERY",
                    "OK",
                    "SELECT * FROM `controller`",
                    None,
                    Some(21),
                    3,
                ),
            ],
        ),
    ];
    for (name, expected) in cases {
        let (_, records) = decode(&format!("tests/data/deepflow/mysql/{name}.pcap.gz"));
        let got: Vec<Expected> = records
            .iter()
            .map(|r| {
                let c = r.mysql().unwrap();
                let query: String = c.query().unwrap_or("").chars().take(40).collect();
                let query: &'static str = Box::leak(query.into_boxed_str());
                (
                    c.name().unwrap(),
                    c.outcome.as_str(),
                    query,
                    c.error_code,
                    c.num_fields,
                    c.rows,
                )
            })
            .collect();
        assert_eq!(got, *expected, "{name}");
        for r in &records {
            let c = r.mysql().unwrap();
            assert!(!c.flags.gap && !c.flags.truncated, "{name}: {}", summary(c));
        }
    }
}
