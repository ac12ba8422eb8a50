//! MySQL/MariaDB through the main job's pipeline: every command of the shared captures (the
//! mariadb CLI, Connector/Python pure and C, the compressed protocol, TLS) must match its truth
//! file, timestamps to the microsecond; DeepFlow's MySQL captures decode as their bytes say; and
//! damaged copies (cut to start at every frame, each data frame lost, a snaplen) never invent or
//! mis-pair a command.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use common::{analyze_records, micros, micros_of, pcap_records, ports_and_payload, truth};
use examples::capture::open;
use examples::meshsniff::{Record, Totals, analyze};
use l7decode::mysql::{Command, Status};

fn decode(path: &str) -> (Totals, Vec<Record>) {
    let capture = open(&common::data(path)).unwrap();
    let mut out = Vec::new();
    let (totals, failure) = analyze(capture, |r| out.push(r));
    assert!(failure.is_none(), "{failure:?}");
    (totals, out)
}

/// The records' commands in order of their command's last byte (the truth's order).
fn commands(records: &[Record]) -> Vec<(&Record, &Command)> {
    let mut got: Vec<(&Record, &Command)> = records
        .iter()
        .map(|r| (r, r.mysql().expect("a MySQL record")))
        .collect();
    got.sort_by_key(|(r, c)| (c.request.map(|s| s.last.0), r.client.to_string()));
    got
}

fn truth_commands(path: &str) -> Vec<serde_json::Value> {
    let mut expected = truth(path)["transactions"].as_array().unwrap().clone();
    expected.sort_by(|a, b| {
        a["req_time"]
            .as_f64()
            .unwrap()
            .total_cmp(&b["req_time"].as_f64().unwrap())
    });
    expected
}

fn summary(c: &Command) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?}",
        c.name(),
        c.status,
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
    assert_eq!(c.status.as_str(), e["status"].as_str().unwrap(), "{id}");
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
        let expected = truth_commands(&format!("tests/data/mysql/{name}.truth.json"));
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
        let all = truth_commands(&format!("tests/data/mysql/{name}.truth.json"));
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
