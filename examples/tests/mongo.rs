//! MongoDB through the main job's pipeline: every operation of the shared captures (pymongo 4.20
//! with OP_MSG, kind-1 sequences, write errors, a w:0 insert, an exhaust chain and zlib
//! compression; pymongo 3.13 with OP_QUERY/OP_REPLY and OP_INSERT) must match its truth file,
//! timestamps to the microsecond; DeepFlow's real-mongod captures decode as their bytes say; and
//! copies cut to start at every frame, or with any one data frame lost, never pair wrongly.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use common::{
    analyze_records, decode, each_data_frame_lost, micros, micros_of, pcap_records,
    truth_by_request,
};
use examples::meshsniff::Record;
use l7decode::mongo::{Operation, Outcome, wire};

/// The operations with a request, in order of the request's last byte (the truth's order).
fn operations(records: &[Record]) -> Vec<(&Record, &Operation)> {
    let mut got: Vec<(&Record, &Operation)> = records
        .iter()
        .map(|r| (r, r.mongo().expect("a MongoDB record")))
        .filter(|(_, o)| o.request.is_some())
        .collect();
    got.sort_by_key(|(r, o)| (o.request.map(|s| s.last.0), r.client.to_string()));
    got
}

fn summary(o: &Operation) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?}",
        o.request_id,
        o.command(),
        o.collection(),
        o.outcome,
        o.response_messages,
        o.flags
    )
}

/// Every field the truth names, timestamps to the microsecond.
fn assert_matches(r: &Record, o: &Operation, e: &serde_json::Value, what: &str) {
    let id = format!("{what}: {} {}", e["request_id"], e["command"]);
    assert_eq!(r.client.to_string(), e["client"].as_str().unwrap(), "{id}");
    assert_eq!(r.server.to_string(), e["server"].as_str().unwrap(), "{id}");
    assert_eq!(
        o.request_id.map(u64::from),
        e["request_id"].as_u64(),
        "{id}"
    );
    assert_eq!(wire::opcode_name(o.opcode), e["opcode"].as_str(), "{id}");
    assert_eq!(
        o.compressor.is_some(),
        e["compressed"].as_bool().unwrap(),
        "{id}"
    );
    if e["compressor"].as_str() == Some("zlib") {
        assert_eq!(o.compressor, Some(2), "{id}");
    }
    assert_eq!(o.command(), e["command"].as_str(), "{id}");
    assert_eq!(o.db(), e["db"].as_str(), "{id}");
    assert_eq!(o.collection(), e["collection"].as_str(), "{id}");
    let sequences: Vec<(String, u64)> = o
        .sequences()
        .map(|(name, n)| (name.to_owned(), u64::from(n)))
        .collect();
    let expected: Vec<(String, u64)> = e["kind1_sections"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(sequences, expected, "{id}");
    assert_eq!(
        o.more_to_come,
        e["more_to_come"].as_bool().unwrap_or(false),
        "{id}"
    );
    assert_eq!(
        o.exhaust_allowed,
        e["exhaust_allowed"].as_bool().unwrap_or(false),
        "{id}"
    );
    assert_eq!(
        o.request.unwrap().bytes,
        e["req_bytes"].as_u64().unwrap(),
        "{id}"
    );
    assert_eq!(o.outcome.as_str(), e["status"].as_str().unwrap(), "{id}");
    assert_eq!(
        o.response_opcode.and_then(wire::opcode_name),
        e["resp_opcode"].as_str(),
        "{id}"
    );
    if let Some(c) = e["resp_compressed"].as_bool() {
        assert_eq!(o.response_compressed, c, "{id}");
        assert_eq!(
            u64::from(o.response_messages),
            e["resp_messages"].as_u64().unwrap(),
            "{id}"
        );
    }
    let chain: Vec<u64> = o.reply_chain().iter().map(|&i| u64::from(i)).collect();
    let expected_chain: Vec<u64> = e["resp_more_to_come_chain"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_u64().unwrap()).collect())
        .unwrap_or_default();
    assert_eq!(chain, expected_chain, "{id}");
    assert_eq!(o.ok, e["ok"].as_f64(), "{id}");
    assert_eq!(o.errmsg(), e["errmsg"].as_str(), "{id}");
    assert_eq!(o.code, e["code"].as_i64(), "{id}");
    assert_eq!(o.code_name(), e["codeName"].as_str(), "{id}");
    assert_eq!(o.n, e["n"].as_i64(), "{id}");
    let codes: Vec<i64> = e["write_error_codes"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_i64().unwrap()).collect())
        .unwrap_or_default();
    assert_eq!(o.write_error_codes(), codes.as_slice(), "{id}");
    assert_eq!(o.cursor_id, e["cursor_id"].as_i64(), "{id}");
    if let Some(docs) = e["batch_docs"].as_u64() {
        assert_eq!(o.batch_docs, docs, "{id}");
    }
    assert_eq!(
        o.reply_flags.map(u64::from),
        e["reply_flags"].as_u64(),
        "{id}"
    );
    assert_eq!(
        o.number_returned.map(i64::from),
        e["number_returned"].as_i64(),
        "{id}"
    );
    let req = o.request.unwrap();
    assert_eq!(
        micros_of(req.first),
        micros(e["req_first_time"].as_f64().unwrap()),
        "{id}"
    );
    assert_eq!(
        micros_of(req.last),
        micros(e["req_time"].as_f64().unwrap()),
        "{id}"
    );
    let resp = o.response.map(|s| (micros_of(s.first), micros_of(s.last)));
    let expected = e["resp_first_time"]
        .as_f64()
        .map(|f| (micros(f), micros(e["resp_last_time"].as_f64().unwrap())));
    assert_eq!(resp, expected, "{id}");
    assert!(!o.flags.gap && !o.flags.truncated, "{id}");
}

const CAPTURES: [&str; 2] = ["mongo_pymongo", "mongo_legacy"];

#[test]
fn every_operation_of_the_shared_captures_matches_the_truth() {
    for name in CAPTURES {
        let (totals, records) = decode(&format!("tests/data/mongo/{name}.pcap"));
        assert_eq!(totals.gap_bytes + totals.skipped_bytes, 0, "{name}");
        let expected = truth_by_request(&format!("tests/data/mongo/{name}.truth.json"));
        let got = operations(&records);
        assert_eq!(got.len(), records.len(), "{name}: no orphan");
        assert_eq!(
            got.len(),
            expected.len(),
            "{name}: {:#?}",
            got.iter().map(|(_, o)| summary(o)).collect::<Vec<_>>()
        );
        for ((r, o), e) in got.into_iter().zip(&expected) {
            assert_matches(r, o, e, name);
        }
    }
}

#[test]
fn mid_stream_starts_decode_every_operation_they_hold_exactly() {
    for name in CAPTURES {
        let (header, records) = pcap_records(&format!("tests/data/mongo/{name}.pcap"));
        let all = truth_by_request(&format!("tests/data/mongo/{name}.truth.json"));
        for skip in 1..records.len() {
            let what = format!("{name} without its first {skip} frames");
            let got = analyze_records(&header, &records[skip..]);
            let expected: Vec<_> = all
                .iter()
                .filter(|t| t["req_first_frame"].as_u64().unwrap() > skip as u64)
                .collect();
            // Replies to requests the cut took are orphans, never paired.
            for r in &got {
                let o = r.mongo().unwrap_or_else(|| panic!("{what}: {r:?}"));
                assert!(
                    o.request.is_some() || o.flags.orphan,
                    "{what}: {}",
                    summary(o)
                );
            }
            let got = operations(&got);
            assert_eq!(
                got.len(),
                expected.len(),
                "{what}: {:#?}",
                got.iter().map(|(_, o)| summary(o)).collect::<Vec<_>>()
            );
            for ((r, o), e) in got.into_iter().zip(expected) {
                assert_matches(r, o, e, &what);
            }
        }
    }
}

#[test]
fn a_lost_segment_damages_only_its_own_operation() {
    for name in CAPTURES {
        let (header, records) = pcap_records(&format!("tests/data/mongo/{name}.pcap"));
        let truth = truth_by_request(&format!("tests/data/mongo/{name}.truth.json"));
        each_data_frame_lost(&header, &records, |frame, (from, _), got| {
            let what = format!("{name} frame {frame} dropped");
            let carried = |t: &serde_json::Value| {
                let port = |f: &str| {
                    t[f].as_str()
                        .unwrap()
                        .rsplit(':')
                        .next()
                        .unwrap()
                        .parse::<u16>()
                        .unwrap()
                };
                let within = |a: &str, b: &str| {
                    t[a].as_u64()
                        .zip(t[b].as_u64())
                        .is_some_and(|(a, b)| (a..=b).contains(&frame))
                };
                (from == port("client") && within("req_first_frame", "req_frame"))
                    || (from == port("server") && within("resp_first_frame", "resp_last_frame"))
            };
            let (touched, intact): (Vec<_>, Vec<_>) = truth.iter().partition(|t| carried(t));
            let ops = operations(&got);
            let (damaged, whole): (Vec<_>, Vec<_>) = ops.into_iter().partition(|(_, o)| {
                let f = o.flags;
                f.gap || f.truncated || f.missing_response || o.outcome == Outcome::Missing
            });
            assert_eq!(
                whole.len(),
                intact.len(),
                "{what}: {:#?}",
                whole
                    .iter()
                    .chain(&damaged)
                    .map(|(_, o)| summary(o))
                    .collect::<Vec<_>>()
            );
            for ((r, o), e) in whole.into_iter().zip(&intact) {
                assert_matches(r, o, e, &what);
            }
            assert!(damaged.len() <= touched.len(), "{what}");
            for (_, o) in damaged {
                let real = touched
                    .iter()
                    .any(|e| o.request_id.map(u64::from) == e["request_id"].as_u64());
                assert!(real, "{what}: {}", summary(o));
            }
        });
    }
}

/// DeepFlow's captures from a real mongod: the mongo shell (4.4) logging in with SCRAM
/// (`isMaster` as OP_QUERY with requestID 0, so its reply's responseTo is 0), then OP_MSG
/// commands; and one `find`. Commands, databases and outcomes agree with DeepFlow's `.result`.
#[test]
fn deepflow_mongo_captures() {
    let (_, records) = decode("tests/data/deepflow/mongo/mongo.pcap.gz");
    let got: Vec<(Option<&str>, Option<&str>, &str)> = records
        .iter()
        .map(|r| {
            let o = r.mongo().unwrap();
            (o.command(), o.db(), o.outcome.as_str())
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some("isMaster"), Some("admin"), "OK"),
            (Some("saslContinue"), Some("admin"), "OK"),
            (Some("saslContinue"), Some("admin"), "OK"),
            (Some("whatsmyuri"), Some("admin"), "OK"),
            (Some("buildinfo"), Some("admin"), "OK"),
            (Some("getLog"), Some("admin"), "OK"),
            (Some("isMaster"), Some("test"), "OK"),
            (Some("buildInfo"), Some("test"), "OK"),
            (Some("getCmdLineOpts"), Some("admin"), "OK"),
            (Some("buildInfo"), Some("test"), "OK"),
            (Some("isMaster"), Some("test"), "OK"),
            (Some("replSetGetStatus"), Some("admin"), "ERROR"),
            (Some("getLog"), Some("admin"), "OK"),
            (Some("isMaster"), Some("test"), "OK"),
            (Some("endSessions"), Some("admin"), "OK"),
        ]
    );
    let repl = records[11].mongo().unwrap();
    assert_eq!(
        (repl.code_name(), repl.errmsg()),
        (
            Some("NoReplicationEnabled"),
            Some("not running with --replSet")
        )
    );
    assert_eq!(records[0].mongo().unwrap().reply_flags, Some(8));
    let (_, records) = decode("tests/data/deepflow/mongo/mongo-msg.pcap");
    let find = records[0].mongo().unwrap();
    assert_eq!(
        (
            find.command(),
            find.db(),
            find.collection(),
            find.outcome,
            find.batch_docs
        ),
        (
            Some("find"),
            Some("sky-test"),
            Some("query"),
            Outcome::Ok,
            1
        )
    );
}
