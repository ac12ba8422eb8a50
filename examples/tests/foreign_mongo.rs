//! What a MongoDB 3.0 shell puts on the wire (built by `gen_mongo30_shell.py`, see
//! `tests/data/foreign/mongo/README.md`): every request is an OP_QUERY or OP_GET_MORE with
//! responseTo -1, every answer an OP_REPLY. The whole session and copies cut to start inside the
//! connection (at a request, inside the 46 KB reply of a find, inside a 46 KB insert; and at
//! every frame) must give exactly the records below: commands by `ok`, queries by their reply's
//! flags, write errors with their messages, replies paired by their responseTo, timestamps to the
//! microsecond.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use common::{
    analyze_records, data, each_data_frame_lost, micros_of, pcap_records, ports_and_payload, truth,
};
use examples::meshsniff::{Record, Totals, analyze};
use l7decode::mongo::{Operation, Outcome, wire};

const DIR: &str = "tests/data/foreign/mongo";
const CLIENT: &str = "192.0.2.10:50644";
const SERVER: &str = "192.0.2.20:27017";

const DUP: &str = "E11000 duplicate key error index: test.users.$_id_  dup key: { : 1.0 }";
const BAD_OPERATOR: &str = "Can't canonicalize query: BadValue unknown operator: $bad";

/// One operation of the session, as its record must read.
struct Expected {
    request_id: u32,
    opcode: &'static str,
    command: &'static str,
    db: &'static str,
    collection: Option<&'static str>,
    status: Outcome,
    ok: Option<f64>,
    errmsg: Option<&'static str>,
    code: Option<i64>,
    n: Option<i64>,
    write_errors: &'static [(i64, &'static str)],
    reply_flags: u32,
    number_returned: i32,
    batch_docs: u64,
    cursor_id: Option<i64>,
}

/// A command on `db.$cmd` answered `ok: 1` in an OP_REPLY (AwaitCapable set).
const fn command(request_id: u32, command: &'static str, db: &'static str) -> Expected {
    Expected {
        request_id,
        opcode: "OP_QUERY",
        command,
        db,
        collection: None,
        status: Outcome::Ok,
        ok: Some(1.0),
        errmsg: None,
        code: None,
        n: None,
        write_errors: &[],
        reply_flags: 8,
        number_returned: 1,
        batch_docs: 0,
        cursor_id: None,
    }
}

/// A find (OP_QUERY) or `it` (OP_GET_MORE) on `test.users` answered with `docs` results (no
/// `ok`: the reply's flags say how it went).
const fn query(request_id: u32, get_more: bool, docs: i32, cursor: i64) -> Expected {
    Expected {
        request_id,
        opcode: if get_more { "OP_GET_MORE" } else { "OP_QUERY" },
        command: if get_more {
            "OP_GET_MORE"
        } else {
            "OP_QUERY(find)"
        },
        db: "test",
        collection: Some("users"),
        status: Outcome::Ok,
        ok: None,
        errmsg: None,
        code: None,
        n: None,
        write_errors: &[],
        reply_flags: 8,
        number_returned: docs,
        batch_docs: docs as u64,
        cursor_id: Some(cursor),
    }
}

const BIG_CURSOR: i64 = 72_340_172_838_076_673;
const STALE_CURSOR: i64 = 72_340_172_838_076_999;

/// The session, in order.
const SESSION: [Expected; 15] = [
    command(1, "whatsmyuri", "admin"),
    command(2, "isMaster", "admin"),
    // The first element's string value is read as the collection, as for every command.
    Expected {
        collection: Some("startupWarnings"),
        ..command(3, "getLog", "admin")
    },
    Expected {
        status: Outcome::Error,
        ok: Some(0.0),
        errmsg: Some("not running with --replSet"),
        code: Some(76),
        ..command(4, "replSetGetStatus", "admin")
    },
    Expected {
        collection: Some("users"),
        n: Some(1),
        ..command(5, "insert", "test")
    },
    // 120 documents in one insert (about 46 KB).
    Expected {
        collection: Some("users"),
        n: Some(120),
        ..command(6, "insert", "test")
    },
    // A duplicate key: ok 1 with a write error, its message next to its code.
    Expected {
        collection: Some("users"),
        status: Outcome::WriteError,
        n: Some(0),
        write_errors: &[(11000, DUP)],
        ..command(7, "insert", "test")
    },
    // db.users.find({group: 3, _id: {$lt: 32}}): five results, no `ok`, a success.
    query(8, false, 5, 0),
    // db.users.find(): the first batch, 101 documents in about 46 KB, a cursor left open.
    query(9, false, 101, BIG_CURSOR),
    // it
    query(10, true, 20, 0),
    // db.users.find().batchSize(2)
    query(11, false, 2, STALE_CURSOR),
    // The cursor timed out on the server: CursorNotFound, no document.
    Expected {
        status: Outcome::CursorNotFound,
        reply_flags: 1,
        cursor_id: None,
        ..query(12, true, 0, 0)
    },
    // db.users.find({age: {$bad: 1}}): QueryFailure with `$err` and `code`.
    Expected {
        status: Outcome::QueryFailure,
        errmsg: Some(BAD_OPERATOR),
        code: Some(17287),
        reply_flags: 2,
        batch_docs: 0,
        cursor_id: None,
        ..query(13, false, 1, 0)
    },
    Expected {
        status: Outcome::Error,
        ok: Some(0.0),
        errmsg: Some("no such cmd: noSuchCmd"),
        code: Some(59),
        ..command(14, "noSuchCmd", "test")
    },
    Expected {
        collection: Some("users"),
        n: Some(121),
        ..command(15, "count", "test")
    },
];

fn expected(request_id: u32) -> &'static Expected {
    SESSION.iter().find(|e| e.request_id == request_id).unwrap()
}

/// The exchanges' frames and times, as the generator wrote them, by request id.
fn timing(request_id: u32) -> serde_json::Value {
    let t = truth(&format!("{DIR}/mongo30_shell.truth.json"));
    t["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["request_id"].as_u64() == Some(u64::from(request_id)))
        .unwrap()
        .clone()
}

/// The pipeline on one of the captures, through the public entry points.
fn decode(name: &str) -> (Totals, Vec<Record>) {
    let path = data(&format!("{DIR}/{name}"));
    let capture = examples::capture::open(&path).unwrap();
    let mut records = Vec::new();
    let (totals, failure) = analyze(capture, |r| records.push(r));
    assert!(failure.is_none(), "{failure:?}");
    (totals, records)
}

/// One line per record, for failure messages.
fn summary(o: &Operation) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?}",
        o.request_id,
        o.command(),
        o.outcome,
        o.number_returned,
        o.flags
    )
}

/// What the reply says, the same whether its request was seen or not.
fn assert_reply(o: &Operation, e: &Expected, what: &str) {
    assert_eq!(o.outcome, e.status, "{what}");
    assert_eq!(
        o.response_opcode.and_then(wire::opcode_name),
        Some("OP_REPLY")
    );
    assert_eq!(o.ok, e.ok, "{what}");
    assert_eq!(o.errmsg(), e.errmsg, "{what}");
    assert_eq!(o.code, e.code, "{what}");
    assert_eq!(o.n, e.n, "{what}");
    let write_errors: Vec<(i64, Option<&str>)> = o.write_errors().collect();
    let expected: Vec<(i64, Option<&str>)> =
        e.write_errors.iter().map(|(c, m)| (*c, Some(*m))).collect();
    assert_eq!(write_errors, expected, "{what}");
    assert_eq!(o.reply_flags, Some(e.reply_flags), "{what}");
    assert_eq!(o.number_returned, Some(e.number_returned), "{what}");
    assert_eq!(o.batch_docs, e.batch_docs, "{what}");
    assert_eq!(o.cursor_id, e.cursor_id, "{what}");
    assert_eq!(o.response_messages, 1, "{what}");
    let t = timing(e.request_id);
    let resp = o.response.unwrap();
    assert_eq!(resp.bytes, t["resp_bytes"].as_u64().unwrap(), "{what}");
    assert_eq!(
        (micros_of(resp.first), micros_of(resp.last)),
        (
            t["resp_first_us"].as_i64().unwrap(),
            t["resp_last_us"].as_i64().unwrap()
        ),
        "{what}"
    );
    assert!(
        !o.flags.gap && !o.flags.truncated && !o.text_cut(),
        "{what}"
    );
}

/// Every field of a paired operation.
fn assert_operation(r: &Record, o: &Operation, e: &Expected, what: &str) {
    let what = format!("{what}: request {}", e.request_id);
    assert_eq!(
        (r.client.to_string(), r.server.to_string()),
        (CLIENT.to_owned(), SERVER.to_owned()),
        "{what}"
    );
    assert_eq!(o.request_id, Some(e.request_id), "{what}");
    assert_eq!(wire::opcode_name(o.opcode), Some(e.opcode), "{what}");
    assert_eq!(o.command(), Some(e.command), "{what}");
    assert_eq!(o.db(), Some(e.db), "{what}");
    assert_eq!(o.collection(), e.collection, "{what}");
    assert!(!o.flags.orphan && !o.flags.missing_response, "{what}");
    let t = timing(e.request_id);
    let req = o.request.unwrap();
    assert_eq!(req.bytes, t["req_bytes"].as_u64().unwrap(), "{what}");
    assert_eq!(
        (micros_of(req.first), micros_of(req.last)),
        (
            t["req_first_us"].as_i64().unwrap(),
            t["req_last_us"].as_i64().unwrap()
        ),
        "{what}"
    );
    assert_reply(o, e, &what);
}

/// The records of a copy that starts at frame `skip + 1`: the operations whose request it holds
/// whole, exactly and in order; every other record a reply whose request was cut, read as
/// it says (a command's by `ok`, a query's results by the flags), never paired.
fn assert_cut(records: &[Record], skip: u64, what: &str) {
    let whole: Vec<&Expected> = SESSION
        .iter()
        .filter(|e| timing(e.request_id)["req_first_frame"].as_u64().unwrap() > skip)
        .collect();
    let mut paired = Vec::new();
    for r in records {
        let o = r.mongo().unwrap_or_else(|| panic!("{what}: {r:?}"));
        if o.request.is_some() {
            paired.push((r, o));
            continue;
        }
        assert!(o.flags.orphan, "{what}: {}", summary(o));
        // The reply of a request the cut took.
        let first = micros_of(o.response.unwrap().first);
        let e = SESSION
            .iter()
            .find(|e| timing(e.request_id)["resp_first_us"].as_i64() == Some(first))
            .unwrap_or_else(|| panic!("{what}: no such reply {}", summary(o)));
        assert!(
            !whole.iter().any(|w| w.request_id == e.request_id),
            "{what}"
        );
        assert_reply(o, e, &format!("{what}: orphan reply to {}", e.request_id));
    }
    assert_eq!(
        paired.len(),
        whole.len(),
        "{what}: {:#?}",
        paired.iter().map(|(_, o)| summary(o)).collect::<Vec<_>>()
    );
    for ((r, o), e) in paired.into_iter().zip(whole) {
        assert_operation(r, o, e, what);
    }
}

/// The first frame a cut copy keeps, as the generator wrote it.
fn cut(name: &str) -> u64 {
    truth(&format!("{DIR}/mongo30_shell.truth.json"))["cuts"][name]
        .as_u64()
        .unwrap()
}

#[test]
fn the_whole_session_decodes_exactly() {
    let (totals, records) = decode("mongo30_shell.pcap.gz");
    assert_eq!(
        (totals.connections, totals.gap_bytes, totals.skipped_bytes),
        (1, 0, 0)
    );
    assert_eq!(records.len(), SESSION.len());
    for (r, e) in records.iter().zip(&SESSION) {
        assert_operation(r, r.mongo().unwrap(), e, "whole session");
    }
    // Finds and getMores are counted as successes, except the two whose flags say otherwise;
    // the commands by their `ok`.
    let errors = records
        .iter()
        .filter(|r| r.mongo().unwrap().outcome != Outcome::Ok)
        .count();
    assert_eq!(errors, 5);
}

#[test]
fn joined_at_a_request_every_request_is_found() {
    let name = "mongo30_shell_from_request.pcap.gz";
    let (totals, records) = decode(name);
    assert_eq!((totals.gap_bytes, totals.skipped_bytes), (0, 0));
    assert_cut(&records, cut(name), name);
    assert_eq!(records.len(), 11);
}

/// Joined inside the 46 KB reply of `db.users.find()`: its rest is skipped (no message is
/// found inside its documents), then every request and reply after it is read.
#[test]
fn joined_inside_the_big_reply() {
    let name = "mongo30_shell_mid_reply.pcap.gz";
    let (totals, records) = decode(name);
    assert_cut(&records, cut(name), name);
    assert_eq!(
        records
            .iter()
            .map(|r| r.mongo().unwrap().request_id.unwrap())
            .collect::<Vec<_>>(),
        [10, 11, 12, 13, 14, 15]
    );
    assert_eq!(totals.skipped_bytes, rest_of(name, 9, false));
}

/// Joined inside the 46 KB insert: its rest is skipped, its reply is an orphan read as a
/// command's (it has `ok`), and every request after it is found.
#[test]
fn joined_inside_the_big_insert() {
    let name = "mongo30_shell_mid_request.pcap.gz";
    let (totals, records) = decode(name);
    assert_cut(&records, cut(name), name);
    let orphan = records[0].mongo().unwrap();
    assert_eq!(
        (orphan.flags.orphan, orphan.outcome, orphan.n),
        (true, Outcome::Ok, Some(120))
    );
    assert_eq!(records.len(), 1 + 9);
    assert_eq!(totals.skipped_bytes, rest_of(name, 6, true));
}

/// The bytes a cut copy holds of request `request_id`'s request (`client`) or reply.
fn rest_of(name: &str, request_id: u32, client: bool) -> u64 {
    let (_, frames) = pcap_records(&format!("{DIR}/{name}"));
    let t = timing(request_id);
    let (first, last) = if client {
        ("req_first_frame", "req_frame")
    } else {
        ("resp_first_frame", "resp_last_frame")
    };
    let skip = cut(name);
    let range = t[first].as_u64().unwrap()..=t[last].as_u64().unwrap();
    frames
        .iter()
        .enumerate()
        .filter(|(i, _)| range.contains(&(*i as u64 + 1 + skip)))
        .map(|(_, (_, frame))| ports_and_payload(frame))
        .filter(|((from, _), _)| (*from == 27017) != client)
        .map(|(_, payload)| payload as u64)
        .sum()
}

/// Cuts whose first bytes look like a MySQL command although the server is on MongoDB's port:
/// the segment (of the getMore's reply) starts inside a BSON document just after a string's NUL
/// (`"r s\0" 0x04 "tags\0"`), which reads as a 3-byte length, sequence id 0 and COM_FIELD_LIST.
/// The port outweighs a guess that weak (`connection/sniff.rs`), so they decode as MongoDB.
const SNIFFED_AS_MYSQL: [u64; 1] = [142];

#[test]
fn every_cut_decodes_what_it_holds() {
    let (header, frames) = pcap_records(&format!("{DIR}/mongo30_shell.pcap.gz"));
    for skip in 1..frames.len() {
        let what = format!("without the first {skip} frames");
        assert_cut(
            &analyze_records(&header, &frames[skip..]),
            skip as u64,
            &what,
        );
    }
}

#[test]
fn cuts_inside_a_document_are_not_taken_for_mysql() {
    let (header, frames) = pcap_records(&format!("{DIR}/mongo30_shell.pcap.gz"));
    for skip in SNIFFED_AS_MYSQL {
        let what = format!("without the first {skip} frames");
        let records = analyze_records(&header, &frames[skip as usize..]);
        assert_cut(&records, skip, &what);
    }
}

/// A segment lost anywhere damages only the operation it carried: every other one decodes
/// exactly (a lost first segment of a request makes its reply an orphan, read as it says).
#[test]
fn a_lost_segment_damages_only_its_own_operation() {
    let (header, frames) = pcap_records(&format!("{DIR}/mongo30_shell.pcap.gz"));
    each_data_frame_lost(&header, &frames, |frame, (from, _), records| {
        let what = format!("frame {frame} lost");
        let carried = |e: &Expected| {
            let t = timing(e.request_id);
            let within = |a: &str, b: &str| {
                (t[a].as_u64().unwrap()..=t[b].as_u64().unwrap()).contains(&frame)
            };
            (from != 27017 && within("req_first_frame", "req_frame"))
                || (from == 27017 && within("resp_first_frame", "resp_last_frame"))
        };
        let touched: Vec<u32> = SESSION
            .iter()
            .filter(|e| carried(e))
            .map(|e| e.request_id)
            .collect();
        assert_eq!(touched.len(), 1, "{what}");
        for r in &records {
            let o = r.mongo().unwrap();
            let damaged =
                o.flags.gap || o.flags.truncated || o.flags.orphan || o.outcome == Outcome::Missing;
            match o.request_id {
                Some(id) if !damaged => assert_operation(r, o, expected(id), &what),
                Some(id) => assert_eq!(id, touched[0], "{what}: {}", summary(o)),
                // The reply of the request that lost its first segment.
                None => {
                    let first = micros_of(o.response.unwrap().first);
                    let t = timing(touched[0]);
                    assert_eq!(
                        Some(first),
                        t["resp_first_us"].as_i64(),
                        "{what}: {}",
                        summary(o)
                    );
                }
            }
        }
        let intact = records
            .iter()
            .filter(|r| {
                let o = r.mongo().unwrap();
                o.request_id.is_some_and(|id| id != touched[0])
            })
            .count();
        assert_eq!(intact, SESSION.len() - 1, "{what}");
    });
}

#[test]
fn json_records_carry_write_error_messages() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshsniff"))
        .arg("--json")
        .arg(common::data(&format!("{DIR}/mongo30_shell.pcap.gz")))
        .output()
        .unwrap();
    assert!(out.status.success());
    let records: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let errors: Vec<_> = records
        .iter()
        .filter(|r| r["write_errors"].as_array().is_some_and(|e| !e.is_empty()))
        .map(|r| r["write_errors"].clone())
        .collect();
    assert_eq!(
        errors,
        [serde_json::json!([{
            "code": 11000,
            "errmsg": "E11000 duplicate key error index: test.users.$_id_  dup key: { : 1.0 }"
        }])]
    );
}
