//! The main job's pipeline on a real capture (nginx + backend, driven by curl, MTU 1500 so
//! reassembly is exercised): every transaction must match the truth file exactly, timestamps to
//! the microsecond; and so must every exchange a damaged copy still holds whole (the capture cut
//! to start at each of its frames, each data frame lost in turn, a 128-byte snaplen), while the
//! exchanges the damage reached are flagged and never mis-paired.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::path::Path;

mod common;

use common::{PcapRecord, analyze_records, each_data_frame_lost, micros, pcap_records};
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

/// `http_curl`'s truth, its transactions in order of their requests' first byte.
fn curl_truth_transactions() -> Vec<serde_json::Value> {
    let truth: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/http_curl.truth.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut expected = truth["transactions"].as_array().unwrap().clone();
    expected.sort_by(|a, b| {
        a["req_first_time"]
            .as_f64()
            .unwrap()
            .total_cmp(&b["req_first_time"].as_f64().unwrap())
    });
    expected
}

/// The records that carry a request, in order of the request's first byte.
fn with_requests_in_order(records: &[Record]) -> Vec<&Record> {
    let mut got: Vec<&Record> = records
        .iter()
        .filter(|r| r.http().unwrap().request.is_some())
        .collect();
    got.sort_by_key(|r| r.http().unwrap().request.as_ref().map(|m| m.first.0));
    got
}

/// Every field the truth names, timestamps to the microsecond.
fn assert_matches_truth(r: &Record, e: &serde_json::Value, what: &str) {
    let t = r.http().unwrap();
    let id = format!("{what}: {} {}", e["method"], e["uri"]);
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
    let req = t.request.as_ref().unwrap();
    assert_eq!(
        req.body_bytes,
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
    let times = [
        ("req_first_time", Some(req.first)),
        ("req_time", Some(req.last)),
        ("resp_first_time", t.response.as_ref().map(|m| m.first)),
        ("resp_last_time", t.response.as_ref().map(|m| m.last)),
    ];
    for (field, got) in times {
        assert_eq!(
            got.map(|at| micros(seconds(at))),
            e[field].as_f64().map(micros),
            "{id} {field}"
        );
    }
}

#[test]
fn every_http_curl_transaction_matches_the_truth() {
    let expected = curl_truth_transactions();
    let got = records();
    assert_eq!(got.len(), expected.len());
    let got = with_requests_in_order(&got);
    assert_eq!(got.len(), expected.len());
    for (r, e) in got.into_iter().zip(&expected) {
        assert!(!r.http().unwrap().flags.gap && !r.http().unwrap().flags.truncated);
        assert_matches_truth(r, e, "http_curl");
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
    // The bundled capture (examples/data/README.md): curl → nginx → a Python backend, with
    // trace headers on some requests (12 requests through nginx, 13 exchanges nginx → backend);
    // the mariadb CLI against MariaDB (5 logins, one refused, 14 queries, one failing, 4 quits);
    // and pymongo against a MongoDB wire-protocol server (15 operations).
    let by_proto = |proto: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["proto"] == proto).collect()
    };
    let (http, mysql, mongo) = (by_proto("http"), by_proto("mysql"), by_proto("mongo"));
    assert_eq!((http.len(), mysql.len(), mongo.len()), (25, 23, 15));
    assert_eq!(lines.len(), 63);
    let mongo_status = |command: &str, status: &str| {
        mongo
            .iter()
            .filter(|l| l["command"] == command && l["status"] == status)
            .count()
    };
    assert_eq!(mongo_status("insert", "OK"), 1);
    assert_eq!(mongo_status("insert", "WRITE_ERROR"), 1);
    assert_eq!(mongo_status("insert", "NO_RESPONSE_EXPECTED"), 1);
    assert_eq!(mongo_status("noSuchCommand", "ERROR"), 1);
    let batches: u64 = mongo
        .iter()
        .map(|l| l["batch_docs"].as_u64().unwrap())
        .sum();
    assert_eq!(batches, 35, "4 + 10 + 10 + 10 documents found, 1 counted");
    let count = |command: &str, status: &str| {
        mysql
            .iter()
            .filter(|l| l["command"] == command && l["status"] == status)
            .count()
    };
    assert_eq!(count("LOGIN", "OK"), 4);
    assert_eq!(count("LOGIN", "ERR"), 1);
    assert_eq!(count("COM_QUERY", "OK"), 13);
    assert_eq!(count("COM_QUERY", "ERR"), 1);
    assert_eq!(count("COM_QUIT", "NO_RESPONSE_EXPECTED"), 4);
    let rows = |query: &str| {
        mysql
            .iter()
            .find(|l| l["query"].as_str().is_some_and(|q| q.starts_with(query)))
            .map(|l| (l["num_fields"].as_u64(), l["rows"].as_u64()))
    };
    assert_eq!(
        rows("SELECT id, customer, amount FROM orders WHERE id <= 200"),
        Some((Some(3), Some(200)))
    );
    // The compressed connection decodes like the others.
    assert_eq!(
        rows("SELECT id, note FROM orders WHERE id BETWEEN"),
        Some((Some(2), Some(61)))
    );
    for line in &mysql {
        for field in [
            "command",
            "command_code",
            "query",
            "query_truncated",
            "stmt_id",
            "status",
            "error_code",
            "error_message",
            "affected_rows",
            "num_fields",
            "rows",
            "flags",
            "req_time",
            "resp_last_time",
            "latency_us",
        ] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
    }
    let traced: Vec<(String, String, String)> = http
        .iter()
        .filter(|l| !l["trace"].is_null())
        .map(|l| {
            (
                format!(
                    "{} {}",
                    l["method"].as_str().unwrap(),
                    l["uri"].as_str().unwrap()
                ),
                l["trace"]["format"].as_str().unwrap().to_owned(),
                l["trace"]["trace_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // The ids curl sent; nginx passes them on, so each traced request appears on both hops.
    for (request, format, trace_id, hops) in [
        ("GET /", "w3c", "4bf92f3577b34da6a3ce929d0e0e4736", 1),
        (
            "GET /api/items",
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7",
            2,
        ),
        (
            "GET /api/items/42",
            "b3",
            "463ac35c9f6413ad48485a3953bb6124",
            2,
        ),
        (
            "POST /api/orders",
            "w3c",
            "0af7651916cd43dd8448eb211c80319c",
            2,
        ),
        (
            "GET /api/fail",
            "w3c",
            "11111111111111111111111111111111",
            2,
        ),
    ] {
        let seen = traced
            .iter()
            .filter(|(r, f, t)| r == request && f == format && t == trace_id)
            .count();
        assert_eq!(seen, hops, "{request} {format} {trace_id}: {traced:?}");
    }
    assert_eq!(traced.len(), 9, "{traced:?}");
    for line in &http {
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
    let table = String::from_utf8(run(&["--top", "100"]).stdout).unwrap();
    assert!(
        table.contains("GET /api/items")
            && table.contains("QUERY SELECT * FROM nosuch_table")
            && table.contains("insert shop.orders")
            && table.contains("63 transactions"),
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

/// ab over HTTP/1.0 keep-alive and HTTP/1.1: 3,300 transactions (GET 200, GET 404, POST 201).
/// The truth is the shared truth file reduced to the compared fields (see its first line).
#[test]
fn every_http_ab_transaction_matches_the_truth() {
    use std::io::Read;
    let mut text = String::new();
    let file = std::fs::File::open(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/http_ab.truth.tsv.gz"),
    )
    .unwrap();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap();
    let mut expected: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').collect())
        .collect();
    expected.sort_by_key(|e| (e[7].parse::<i64>().unwrap(), e[0].to_owned()));
    let capture =
        open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/http_ab.pcap.gz")).unwrap();
    let mut got = Vec::new();
    let (totals, failure) = analyze(capture, |r| got.push(r));
    assert!(failure.is_none());
    assert_eq!(totals.gap_bytes, 0);
    got.sort_by_key(|r| {
        (
            r.http()
                .unwrap()
                .request
                .as_ref()
                .map_or(i64::MAX, |m| micros(seconds(m.first))),
            r.client.to_string(),
        )
    });
    assert_eq!(got.len(), expected.len());
    for (r, e) in got.iter().zip(&expected) {
        let t = r.http().unwrap();
        let (req, resp) = (t.request.as_ref().unwrap(), t.response.as_ref().unwrap());
        let line = [
            r.client.to_string(),
            r.server.to_string(),
            t.method().unwrap().to_owned(),
            t.uri().unwrap().to_owned(),
            t.status().unwrap().to_string(),
            req.body_bytes.to_string(),
            resp.body_bytes.to_string(),
            micros(seconds(req.first)).to_string(),
            micros(seconds(req.last)).to_string(),
            micros(seconds(resp.first)).to_string(),
            micros(seconds(resp.last)).to_string(),
            outcome(t).to_owned(),
        ];
        assert_eq!(line.iter().map(String::as_str).collect::<Vec<_>>(), *e);
    }
}

/// DeepFlow's public HTTP captures (`agent/resources/test/flow_generator/http`): each holds one
/// exchange, two of them cut short. Expected values are read from the bytes; method, path and
/// status agree with DeepFlow's own `.result` files.
#[test]
fn deepflow_http_captures() {
    struct Expected {
        file: &'static str,
        method: &'static str,
        uri: &'static str,
        status: u16,
        req_body: u64,
        resp_body: u64,
        latency_us: u64,
        truncated: bool,
    }
    let cases = [
        Expected {
            file: "httpv1.pcap",
            method: "POST",
            uri: "/query?1590632942",
            status: 200,
            req_body: 85,
            resp_body: 54,
            latency_us: 84_051,
            truncated: false,
        },
        // One 1,410-byte segment of a request whose head the server acknowledged at 1,718
        // bytes: the head's complete lines are kept and the response pairs with it.
        Expected {
            file: "client-ip.pcap",
            method: "POST",
            uri: "/biz-inquiry-bff/bff/v1/common/check/polymerization?channel=webportal&terminalType=bff",
            status: 200,
            req_body: 0,
            resp_body: 469,
            latency_us: 84_387,
            truncated: true,
        },
        // An Istio sidecar's request; the capture keeps only the first 17 bytes of the HTTP/1.0
        // response: its status line.
        Expected {
            file: "istio-tcp-frag.pcap",
            method: "GET",
            uri: "/productpage",
            status: 200,
            req_body: 0,
            resp_body: 0,
            latency_us: 167,
            truncated: true,
        },
    ];
    for e in cases {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/deepflow")
            .join(e.file);
        let mut got = Vec::new();
        let (_, failure) = analyze(open(&path).unwrap(), |r| got.push(r));
        assert!(failure.is_none(), "{}: {failure:?}", e.file);
        assert_eq!(got.len(), 1, "{}", e.file);
        let t = got[0].http().unwrap();
        assert_eq!(t.method(), Some(e.method), "{}", e.file);
        assert_eq!(t.uri(), Some(e.uri), "{}", e.file);
        assert_eq!(t.status(), Some(e.status), "{}", e.file);
        assert_eq!(
            t.request.as_ref().unwrap().body_bytes,
            e.req_body,
            "{}",
            e.file
        );
        assert_eq!(
            t.response.as_ref().unwrap().body_bytes,
            e.resp_body,
            "{}",
            e.file
        );
        assert_eq!(t.latency_ns(), Some(e.latency_us * 1_000), "{}", e.file);
        assert_eq!(t.flags.truncated, e.truncated, "{}", e.file);
        assert!(!t.flags.orphan && !t.flags.missing_response, "{}", e.file);
    }
}

/// `http_curl` as classic pcap records (the file header, then each record).
fn curl_records() -> (Vec<u8>, Vec<PcapRecord>) {
    pcap_records("data/http_curl.pcap.gz")
}

/// One line per record for failure messages.
fn summary(r: &Record) -> String {
    let t = r.http().unwrap();
    format!(
        "{} -> {} {:?} {:?} {:?} {:?}",
        r.client,
        r.server,
        t.method(),
        t.uri(),
        t.status(),
        t.flags
    )
}

/// The fixtures' rule for a capture cut to start at frame `first` (`derive_truth.py`): the
/// exchanges whose request starts in the kept frames, unchanged.
fn truth_from_frame(first: u64) -> Vec<serde_json::Value> {
    curl_truth_transactions()
        .into_iter()
        .filter(|t| t["req_first_frame"].as_u64().unwrap() >= first)
        .collect()
}

#[test]
fn mid_stream_starts_decode_every_exchange_they_hold_exactly() {
    let (header, records) = curl_records();
    for skip in 1..records.len() {
        let what = format!("first {skip} packets dropped");
        let got = analyze_records(&header, &records[skip..]);
        let expected = truth_from_frame(skip as u64 + 1);
        let requested = with_requests_in_order(&got);
        assert_eq!(
            requested.len(),
            expected.len(),
            "{what}: {:#?}",
            got.iter().map(summary).collect::<Vec<_>>()
        );
        for (r, e) in requested.into_iter().zip(&expected) {
            assert_matches_truth(r, e, &what);
        }
        // What is left is the answer to a request the cut lost, said as such.
        for r in got.iter().filter(|r| r.http().unwrap().request.is_none()) {
            assert!(r.http().unwrap().flags.orphan, "{what}: {r:?}");
        }
    }
}

/// Whether the lost frame (1-based `frame`, sent from port `from` to port `to`) carried part of
/// exchange `t`.
fn touches(t: &serde_json::Value, frame: u64, (from, to): (u16, u16)) -> bool {
    let port = |field: &str| -> u16 {
        let addr: std::net::SocketAddr = t[field].as_str().unwrap().parse().unwrap();
        addr.port()
    };
    let frame_of = |field: &str| t[field].as_u64();
    let carried = |first: Option<u64>, last: Option<u64>| {
        first
            .zip(last)
            .is_some_and(|(a, b)| (a..=b).contains(&frame))
    };
    if (from, to) == (port("client"), port("server")) {
        carried(frame_of("req_first_frame"), frame_of("req_frame"))
    } else if (from, to) == (port("server"), port("client")) {
        // Interim responses (100 Continue) come before the final one's first frame.
        let interim = t["interim_statuses"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        let first = if interim {
            "req_first_frame"
        } else {
            "resp_first_frame"
        };
        carried(frame_of(first), frame_of("resp_last_frame"))
    } else {
        false
    }
}

#[test]
fn a_lost_segment_damages_only_its_own_exchange() {
    let (header, records) = curl_records();
    let truth = curl_truth_transactions();
    each_data_frame_lost(&header, &records, |frame, ends, got| {
        let what = format!("frame {frame} dropped");
        let (touched, intact): (Vec<_>, Vec<_>) =
            truth.iter().partition(|t| touches(t, frame, ends));
        let flagged = |r: &&Record| {
            let f = r.http().unwrap().flags;
            f.gap || f.truncated || f.missing_response || f.orphan
        };
        let (damaged, whole): (Vec<&Record>, Vec<&Record>) = got.iter().partition(flagged);
        // Every exchange the lost frame did not carry is decoded exactly, unflagged.
        let whole = with_requests_in_order(&whole.into_iter().cloned().collect::<Vec<_>>())
            .into_iter()
            .cloned()
            .collect::<Vec<_>>();
        assert_eq!(
            whole.len(),
            intact.len(),
            "{what}: {:#?}",
            got.iter().map(summary).collect::<Vec<_>>()
        );
        for (r, e) in whole.iter().zip(&intact) {
            assert_matches_truth(r, e, &what);
        }
        // The exchanges it carried are reported flagged (each as one record, or as its request
        // and its response apart when the loss cut the pairing), and never as anything else.
        assert!(
            damaged.len() <= 2 * touched.len(),
            "{what}: {} touched {:#?}",
            touched.len(),
            got.iter().map(summary).collect::<Vec<_>>()
        );
        for r in damaged {
            let t = r.http().unwrap();
            let real = touched.iter().any(|e| {
                t.method().is_none_or(|m| Some(m) == e["method"].as_str())
                    && t.status()
                        .is_none_or(|s| Some(u64::from(s)) == e["status"].as_u64())
            });
            assert!(real, "{what}: {}", summary(r));
        }
    });
}

#[test]
fn a_snaplen_keeps_what_fits_and_flags_the_rest() {
    let (header, records) = curl_records();
    // 128 bytes of each frame: 62 bytes of TCP payload, enough for every request and status
    // line but for no whole head.
    let cut: Vec<_> = records
        .iter()
        .map(|(h, d)| (h.clone(), d[..d.len().min(128)].to_vec()))
        .collect();
    let got = analyze_records(&header, &cut);
    let what = "snaplen 128";
    // One record per exchange, each flagged, each with its status line and both first-byte
    // times exact. Where the cut took a request line whole (curl pipelines six requests in one
    // frame, of which 62 bytes hold the first), its response is reported without it.
    let mut expected = curl_truth_transactions();
    let key = |client: String, at: Option<f64>| (client, at.map(micros));
    expected.sort_by_key(|e| {
        key(
            e["client"].as_str().unwrap().to_owned(),
            e["resp_first_time"].as_f64(),
        )
    });
    let mut got: Vec<&Record> = got.iter().collect();
    got.sort_by_key(|r| {
        key(
            r.client.to_string(),
            r.http()
                .unwrap()
                .response
                .as_ref()
                .map(|m| seconds(m.first)),
        )
    });
    assert_eq!(got.len(), expected.len(), "{what}");
    let mut without_request = 0;
    for (r, e) in got.into_iter().zip(&expected) {
        let t = r.http().unwrap();
        let id = format!("{what}: {} {}", e["method"], e["uri"]);
        assert!(t.flags.truncated, "{id}: {}", summary(r));
        assert_eq!(r.server.to_string(), e["server"].as_str().unwrap(), "{id}");
        assert_eq!(t.status().map(u64::from), e["status"].as_u64(), "{id}");
        assert_eq!(t.reason(), e["reason"].as_str(), "{id}");
        assert_eq!(
            t.response.as_ref().map(|m| micros(seconds(m.first))),
            e["resp_first_time"].as_f64().map(micros),
            "{id}"
        );
        let Some(req) = t.request.as_ref() else {
            assert!(t.flags.orphan, "{id}");
            without_request += 1;
            continue;
        };
        assert_eq!(t.method(), e["method"].as_str(), "{id}");
        assert_eq!(t.uri(), e["uri"].as_str(), "{id}");
        assert_eq!(
            micros(seconds(req.first)),
            micros(e["req_first_time"].as_f64().unwrap()),
            "{id}"
        );
        // The cut bytes are reported as they happen, so the record says bytes are missing.
        assert!(t.flags.gap, "{id}");
    }
    assert_eq!(without_request, 5, "{what}");
}
