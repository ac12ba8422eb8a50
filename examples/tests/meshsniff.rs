//! The main job's pipeline on a real capture (nginx + backend, driven by curl, MTU 1500 so
//! reassembly is exercised): every transaction must match the truth file exactly, timestamps to
//! the microsecond.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::path::Path;

use examples::capture::open;
use examples::meshsniff::{Record, analyze, outcome, seconds};

fn records() -> Vec<Record> {
    let capture =
        open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/http_curl.pcap.gz")).unwrap();
    let mut out = Vec::new();
    let (totals, failure) = analyze(capture, |r| out.push(r));
    assert!(failure.is_none(), "{failure:?}");
    assert_eq!(totals.connections, 14);
    assert_eq!(totals.gap_bytes, 0);
    out
}

fn micros(seconds: f64) -> i64 {
    (seconds * 1e6).round() as i64
}

#[test]
fn every_http_curl_transaction_matches_the_truth() {
    let truth: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/http_curl.truth.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut expected: Vec<&serde_json::Value> =
        truth["transactions"].as_array().unwrap().iter().collect();
    expected.sort_by(|a, b| {
        a["req_first_time"]
            .as_f64()
            .unwrap()
            .total_cmp(&b["req_first_time"].as_f64().unwrap())
    });
    let mut got = records();
    got.sort_by_key(|r| {
        r.transaction
            .request
            .as_ref()
            .map_or(u64::MAX, |m| m.first.0)
    });
    assert_eq!(got.len(), expected.len());
    for (r, e) in got.iter().zip(&expected) {
        let t = &r.transaction;
        let id = format!("{} {}", e["method"], e["uri"]);
        assert_eq!(r.client.to_string(), e["client"].as_str().unwrap(), "{id}");
        assert_eq!(r.server.to_string(), e["server"].as_str().unwrap(), "{id}");
        assert_eq!(t.method(), e["method"].as_str(), "{id}");
        assert_eq!(t.uri(), e["uri"].as_str(), "{id}");
        assert_eq!(
            t.request_version().and_then(|v| v.strip_prefix("HTTP/")),
            e["req_version"].as_str(),
            "{id}"
        );
        assert_eq!(t.status().map(u64::from), e["status"].as_u64(), "{id}");
        assert_eq!(t.reason(), e["reason"].as_str(), "{id}");
        assert_eq!(
            t.request.as_ref().unwrap().body_bytes,
            e["req_body_bytes"].as_u64().unwrap(),
            "{id}"
        );
        assert_eq!(
            t.response.as_ref().map(|m| m.body_bytes),
            e["resp_body_bytes"].as_u64(),
            "{id}"
        );
        let interim: Vec<u64> = e["interim_statuses"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_u64().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(
            t.interim_statuses()
                .iter()
                .map(|s| u64::from(*s))
                .collect::<Vec<_>>(),
            interim,
            "{id}"
        );
        assert_eq!(outcome(t), e["outcome"].as_str().unwrap(), "{id}");
        let (req, resp) = (t.request.as_ref().unwrap(), t.response.as_ref().unwrap());
        assert_eq!(
            micros(seconds(req.first)),
            micros(e["req_first_time"].as_f64().unwrap()),
            "{id} req_first_time"
        );
        assert_eq!(
            micros(seconds(req.last)),
            micros(e["req_time"].as_f64().unwrap()),
            "{id} req_time"
        );
        assert_eq!(
            micros(seconds(resp.first)),
            micros(e["resp_first_time"].as_f64().unwrap()),
            "{id} resp_first_time"
        );
        assert_eq!(
            micros(seconds(resp.last)),
            micros(e["resp_last_time"].as_f64().unwrap()),
            "{id} resp_last_time"
        );
    }
}

#[test]
fn the_program_on_the_bundled_capture() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_meshsniff"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--json"]);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 33);
    for line in &lines {
        for field in [
            "proto",
            "client",
            "server",
            "req_first_time",
            "req_time",
            "resp_first_time",
            "resp_last_time",
            "latency_us",
            "ttfb_us",
            "method",
            "uri",
            "req_version",
            "req_body_bytes",
            "status",
            "reason",
            "interim_statuses",
            "resp_body_bytes",
            "outcome",
            "flags",
            "trace",
        ] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
    }
    let table = String::from_utf8(run(&[]).stdout).unwrap();
    assert!(
        table.contains("GET /index.html") && table.contains("33 transactions"),
        "{table}"
    );
    let bad = run(&["/nonexistent.pcap"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(run(&["--bogus"]).status.code(), Some(2));
    let not_capture =
        std::env::temp_dir().join(format!("meshsniff-not-a-capture-{}", std::process::id()));
    std::fs::write(&not_capture, b"hello, not a capture").unwrap();
    let out = run(&[not_capture.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
}
