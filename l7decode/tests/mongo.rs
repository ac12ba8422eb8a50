//! MongoDB through the connection decoder: OP_MSG checksums and flag bits, kind-1 sequences with
//! any identifier, OP_COMPRESSED (noop, zlib, and a codec that is not built in), exhaust chains,
//! legacy replies (success by flags for queries, by `ok` for commands), the 3.0 shell's requests
//! (responseTo -1) from the start and mid-stream, write errors' messages, the pending bound;
//! generated documents and conversations in any chunking.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use l7decode::mongo::bson::Doc;
use l7decode::mongo::wire::crc32c;
use l7decode::mongo::{Operation, Outcome};
use l7decode::{Direction, Event, Limits, Protocol};
use proptest::prelude::*;

const C: Direction = Direction::ClientToServer;
const S: Direction = Direction::ServerToClient;

/// A BSON value for the encoder below.
#[derive(Debug, Clone)]
enum V {
    Str(String),
    I32(i32),
    I64(i64),
    F64(f64),
    Bool(bool),
    Doc(Vec<(String, Self)>),
    Arr(Vec<Self>),
}

fn doc(fields: &[(&str, V)]) -> Vec<u8> {
    encode(
        &fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<Vec<_>>(),
    )
}

fn encode(fields: &[(String, V)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in fields {
        let (kind, bytes) = match v {
            V::Str(s) => {
                let mut b = ((s.len() + 1) as i32).to_le_bytes().to_vec();
                b.extend_from_slice(s.as_bytes());
                b.push(0);
                (2u8, b)
            }
            V::I32(i) => (0x10, i.to_le_bytes().to_vec()),
            V::I64(i) => (0x12, i.to_le_bytes().to_vec()),
            V::F64(f) => (0x01, f.to_le_bytes().to_vec()),
            V::Bool(b) => (0x08, vec![u8::from(*b)]),
            V::Doc(d) => (0x03, encode(d)),
            V::Arr(a) => {
                let items: Vec<(String, V)> = a
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i.to_string(), v.clone()))
                    .collect();
                (0x04, encode(&items))
            }
        };
        body.push(kind);
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(&bytes);
    }
    let mut out = ((body.len() + 5) as i32).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out.push(0);
    out
}

fn header(len: usize, request_id: u32, response_to: u32, opcode: i32) -> Vec<u8> {
    let mut h = (len as u32).to_le_bytes().to_vec();
    h.extend_from_slice(&request_id.to_le_bytes());
    h.extend_from_slice(&response_to.to_le_bytes());
    h.extend_from_slice(&opcode.to_le_bytes());
    h
}

/// An OP_MSG with a body and kind-1 sequences; a CRC-32C when `checksum`.
fn op_msg(
    id: u32,
    to: u32,
    flags: u32,
    body: &[u8],
    seqs: &[(&str, Vec<Vec<u8>>)],
    checksum: bool,
) -> Vec<u8> {
    let flags = flags | u32::from(checksum);
    let mut sections = flags.to_le_bytes().to_vec();
    sections.push(0);
    sections.extend_from_slice(body);
    for (ident, docs) in seqs {
        let mut s = Vec::new();
        s.extend_from_slice(ident.as_bytes());
        s.push(0);
        for d in docs {
            s.extend_from_slice(d);
        }
        sections.push(1);
        sections.extend_from_slice(&((s.len() + 4) as i32).to_le_bytes());
        sections.extend_from_slice(&s);
    }
    let len = 16 + sections.len() + if checksum { 4 } else { 0 };
    let mut m = header(len, id, to, 2013);
    m.extend_from_slice(&sections);
    if checksum {
        let crc = crc32c(&m);
        m.extend_from_slice(&crc.to_le_bytes());
    }
    m
}

fn ok_reply(id: u32, to: u32, extra: &[(&str, V)]) -> Vec<u8> {
    let mut fields = extra.to_vec();
    fields.push(("ok", V::F64(1.0)));
    op_msg(id, to, 0, &doc(&fields), &[], false)
}

/// The operations, after checking several chunkings give the same events.
fn operations(turns: &[(Direction, Vec<u8>)], limits: Limits) -> Vec<Operation> {
    common::invariant(turns, &[1, 3, 16, 17], limits, 1_000_000)
        .into_iter()
        .filter_map(|e| match e {
            Event::Mongo(o) => Some(o),
            Event::Protocol(Protocol::Mongo) => None,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn checksums_flags_and_sequences() {
    let insert = doc(&[
        ("insert", V::Str("items".into())),
        ("$db", V::Str("shop".into())),
    ]);
    let docs = vec![doc(&[("a", V::I32(1))]), doc(&[("a", V::I32(2))])];
    let turns = vec![
        // Checksummed, with MongoDB 8's bulkWrite sequences next to `documents`.
        (
            C,
            op_msg(
                1,
                0,
                0,
                &insert,
                &[("documents", docs.clone()), ("ops", vec![docs[0].clone()])],
                true,
            ),
        ),
        (S, ok_reply(100, 1, &[("n", V::I32(2))])),
        // A bad checksum is reported, not fatal.
        (C, {
            let mut m = op_msg(2, 0, 0, &insert, &[("documents", docs.clone())], true);
            let last = m.len() - 1;
            m[last] ^= 0xff;
            m
        }),
        (S, ok_reply(101, 2, &[])),
        // An unknown required flag bit makes the message invalid.
        (C, op_msg(3, 0, 1 << 4, &insert, &[], false)),
        (S, ok_reply(102, 3, &[])),
    ];
    let ops = operations(&turns, Limits::default());
    assert_eq!(ops.len(), 3);
    assert_eq!(ops[0].checksum_ok, Some(true));
    assert_eq!(
        ops[0].sequences().collect::<Vec<_>>(),
        [("documents", 2), ("ops", 1)]
    );
    assert_eq!(
        (ops[0].command(), ops[0].db(), ops[0].collection()),
        (Some("insert"), Some("shop"), Some("items"))
    );
    assert_eq!((ops[0].outcome, ops[0].n), (Outcome::Ok, Some(2)));
    assert_eq!(ops[1].checksum_ok, Some(false));
    assert!(ops[2].invalid && ops[2].command().is_none());
}

#[test]
fn exhaust_chains_and_write_errors() {
    let get_more = doc(&[
        ("getMore", V::I64(77)),
        ("collection", V::Str("items".into())),
        ("$db", V::Str("shop".into())),
    ]);
    let batch = |n: usize, id: i64| {
        V::Doc(vec![
            (
                "nextBatch".into(),
                V::Arr((0..n).map(|i| V::I32(i as i32)).collect()),
            ),
            ("id".into(), V::I64(id)),
        ])
    };
    let more = 2u32;
    let chain = [
        op_msg(
            200,
            9,
            more,
            &doc(&[("cursor", batch(2, 77)), ("ok", V::F64(1.0))]),
            &[],
            false,
        ),
        op_msg(
            201,
            200,
            more,
            &doc(&[("cursor", batch(3, 77)), ("ok", V::F64(1.0))]),
            &[],
            false,
        ),
        op_msg(
            202,
            201,
            0,
            &doc(&[("cursor", batch(1, 0)), ("ok", V::F64(1.0))]),
            &[],
            false,
        ),
    ]
    .concat();
    let dup = doc(&[
        ("insert", V::Str("items".into())),
        ("$db", V::Str("shop".into())),
    ]);
    let errors = V::Arr(vec![V::Doc(vec![
        ("index".into(), V::I32(0)),
        ("code".into(), V::I32(11000)),
    ])]);
    let turns = vec![
        (C, op_msg(9, 0, 1 << 16, &get_more, &[], false)),
        (S, chain),
        (C, op_msg(10, 0, 0, &dup, &[], false)),
        (
            S,
            ok_reply(203, 10, &[("n", V::I32(0)), ("writeErrors", errors)]),
        ),
        // ok: 0 as an int, with code and codeName.
        (
            C,
            op_msg(
                11,
                0,
                0,
                &doc(&[
                    ("drop", V::Str("gone".into())),
                    ("$db", V::Str("shop".into())),
                ]),
                &[],
                false,
            ),
        ),
        (
            S,
            op_msg(
                204,
                11,
                0,
                &doc(&[
                    ("ok", V::I32(0)),
                    ("errmsg", V::Str("ns not found".into())),
                    ("code", V::I32(26)),
                    ("codeName", V::Str("NamespaceNotFound".into())),
                ]),
                &[],
                false,
            ),
        ),
        // A moreToCome request: no reply expected.
        (C, op_msg(12, 0, more, &dup, &[], false)),
    ];
    let ops = operations(&turns, Limits::default());
    assert_eq!(ops.len(), 4);
    let g = &ops[0];
    assert_eq!(
        (g.command(), g.collection(), g.exhaust_allowed),
        (Some("getMore"), None, true)
    );
    assert_eq!(
        (
            g.response_messages,
            g.reply_chain(),
            g.batch_docs,
            g.cursor_id
        ),
        (3, &[200, 201, 202][..], 6, Some(77))
    );
    assert_eq!(
        (ops[1].outcome, ops[1].write_error_codes()),
        (Outcome::WriteError, &[11000][..])
    );
    assert_eq!(
        (
            ops[2].outcome,
            ops[2].code,
            ops[2].code_name(),
            ops[2].errmsg()
        ),
        (
            Outcome::Error,
            Some(26),
            Some("NamespaceNotFound"),
            Some("ns not found")
        )
    );
    // Debug shows the error's length, not its text (it can quote a document's values).
    let shown = format!("{:?}", ops[2]);
    assert!(
        !shown.contains("ns not found") && shown.contains("errmsg_len: Some(12)"),
        "{shown}"
    );
    assert_eq!(
        (ops[3].outcome, ops[3].more_to_come),
        (Outcome::NoResponseExpected, true)
    );
}

/// OP_COMPRESSED around `inner` (a whole message; its header is replaced by the prefix).
#[cfg(feature = "compression")]
fn compressed(inner: &[u8], compressor: u8, data: &[u8]) -> Vec<u8> {
    let id = u32::from_le_bytes(inner[4..8].try_into().unwrap());
    let to = u32::from_le_bytes(inner[8..12].try_into().unwrap());
    let opcode = i32::from_le_bytes(inner[12..16].try_into().unwrap());
    let mut body = opcode.to_le_bytes().to_vec();
    body.extend_from_slice(&((inner.len() - 16) as u32).to_le_bytes());
    body.push(compressor);
    body.extend_from_slice(data);
    let mut m = header(16 + body.len(), id, to, 2012);
    m.extend_from_slice(&body);
    m
}

#[cfg(feature = "compression")]
#[test]
fn compressed_messages_are_unwrapped_or_reported_as_compressed() {
    let find = op_msg(
        5,
        0,
        0,
        &doc(&[
            ("find", V::Str("items".into())),
            ("$db", V::Str("shop".into())),
        ]),
        &[],
        false,
    );
    let reply = ok_reply(300, 5, &[("n", V::I32(1))]);
    let zlib = miniz_oxide::deflate::compress_to_vec_zlib(&find[16..], 6);
    let turns = vec![
        (C, compressed(&find, 0, &find[16..])),
        (
            S,
            compressed(
                &reply,
                2,
                &miniz_oxide::deflate::compress_to_vec_zlib(&reply[16..], 6),
            ),
        ),
        (C, compressed(&find, 2, &zlib)),
        (S, reply.clone()),
        // zstd is not built in: the operation is still paired and said to be compressed.
        (C, compressed(&find, 3, &[0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3])),
        (S, reply),
    ];
    let ops = operations(&turns, Limits::default());
    assert_eq!(ops.len(), 3);
    assert_eq!(
        (
            ops[0].compressor,
            ops[0].command(),
            ops[0].response_compressed,
            ops[0].n
        ),
        (Some(0), Some("find"), true, Some(1))
    );
    assert_eq!(
        (
            ops[1].compressor,
            ops[1].command(),
            ops[1].response_compressed
        ),
        (Some(2), Some("find"), false)
    );
    assert_eq!(
        (ops[2].compressor, ops[2].command(), ops[2].outcome),
        (Some(3), None, Outcome::Ok)
    );
}

#[test]
fn legacy_queries_replies_and_writes() {
    let mut query = 0u32.to_le_bytes().to_vec();
    query.extend_from_slice(b"legacy.$cmd\x00");
    query.extend_from_slice(&0i32.to_le_bytes());
    query.extend_from_slice(&(-1i32).to_le_bytes());
    // Wrapped as {$query: {count: "items"}, $readPreference: ...}.
    query.extend(doc(&[
        (
            "$query",
            V::Doc(vec![("count".into(), V::Str("items".into()))]),
        ),
        ("$readPreference", V::Doc(vec![])),
    ]));
    let mut q = header(16 + query.len(), 7, 0, 2004);
    q.extend_from_slice(&query);
    let mut reply_body = 2u32.to_le_bytes().to_vec(); // QueryFailure
    reply_body.extend_from_slice(&0i64.to_le_bytes());
    reply_body.extend_from_slice(&0i32.to_le_bytes());
    reply_body.extend_from_slice(&1i32.to_le_bytes());
    reply_body.extend(doc(&[("$err", V::Str("bad".into())), ("code", V::I32(2))]));
    let mut r = header(16 + reply_body.len(), 400, 7, 1);
    r.extend_from_slice(&reply_body);
    let mut insert = 0u32.to_le_bytes().to_vec();
    insert.extend_from_slice(b"legacy.items\x00");
    insert.extend(doc(&[("a", V::Bool(true))]));
    let mut i = header(16 + insert.len(), 8, 0, 2002);
    i.extend_from_slice(&insert);
    let ops = operations(&[(C, q), (S, r), (C, i)], Limits::default());
    assert_eq!(ops.len(), 2);
    assert_eq!(
        (
            ops[0].command(),
            ops[0].db(),
            ops[0].outcome,
            ops[0].reply_flags
        ),
        (
            Some("count"),
            Some("legacy"),
            Outcome::QueryFailure,
            Some(2)
        )
    );
    assert_eq!(
        (ops[1].command(), ops[1].collection(), ops[1].outcome),
        (
            Some("OP_INSERT"),
            Some("items"),
            Outcome::NoResponseExpected
        )
    );
}

/// The responseTo the mongo shell up to 3.2 puts on every request.
const MINUS_ONE: u32 = u32::MAX;

/// OP_QUERY: flags, namespace, numberToSkip 0, numberToReturn, query.
fn op_query(id: u32, to: u32, ns: &str, flags: u32, to_return: i32, query: &[u8]) -> Vec<u8> {
    let mut body = flags.to_le_bytes().to_vec();
    body.extend_from_slice(ns.as_bytes());
    body.push(0);
    body.extend_from_slice(&0i32.to_le_bytes());
    body.extend_from_slice(&to_return.to_le_bytes());
    body.extend_from_slice(query);
    let mut m = header(16 + body.len(), id, to, 2004);
    m.extend_from_slice(&body);
    m
}

/// OP_GET_MORE: ZERO, namespace, numberToReturn 0, cursorID.
fn op_get_more(id: u32, to: u32, ns: &str, cursor: i64) -> Vec<u8> {
    let mut body = 0u32.to_le_bytes().to_vec();
    body.extend_from_slice(ns.as_bytes());
    body.push(0);
    body.extend_from_slice(&0i32.to_le_bytes());
    body.extend_from_slice(&cursor.to_le_bytes());
    let mut m = header(16 + body.len(), id, to, 2005);
    m.extend_from_slice(&body);
    m
}

/// OP_REPLY: responseFlags, cursorID, startingFrom 0, numberReturned, documents.
fn op_reply(id: u32, to: u32, flags: u32, cursor: i64, docs: &[Vec<u8>]) -> Vec<u8> {
    let mut body = flags.to_le_bytes().to_vec();
    body.extend_from_slice(&cursor.to_le_bytes());
    body.extend_from_slice(&0i32.to_le_bytes());
    body.extend_from_slice(&(docs.len() as i32).to_le_bytes());
    for d in docs {
        body.extend_from_slice(d);
    }
    let mut m = header(16 + body.len(), id, to, 1);
    m.extend_from_slice(&body);
    m
}

const AWAIT_CAPABLE: u32 = 8;

/// A user's document, with fields named like a command reply's (they are data, not a status).
fn user(i: i32) -> Vec<u8> {
    doc(&[
        ("_id", V::F64(f64::from(i))),
        ("name", V::Str(format!("user{i}"))),
        ("ok", V::F64(0.0)),
        ("errmsg", V::Str("a user's field".into())),
        ("code", V::I32(99)),
    ])
}

/// The records, and the bytes skipped, of a connection joined mid-stream on MongoDB's port
/// (both sides look for a message start), after checking several chunkings give the same.
fn joined_mid_stream(turns: &[(Direction, Vec<u8>)]) -> (Vec<Operation>, u64) {
    let run = |chunk: usize| {
        let conn = l7decode::Connection::new(Limits::default()).with_hint(Some(Protocol::Mongo));
        let mut conn = conn;
        let mut events = Vec::new();
        for (i, (dir, bytes)) in turns.iter().enumerate() {
            for piece in bytes.chunks(chunk) {
                conn.feed(*dir, l7decode::Timestamp(i as u64 * 10), piece)
                    .unwrap();
                events.extend(std::iter::from_fn(|| conn.poll_event()));
            }
        }
        conn.feed_eof(C, l7decode::Timestamp(1_000_000));
        conn.feed_eof(S, l7decode::Timestamp(1_000_000));
        events.extend(std::iter::from_fn(|| conn.poll_event()));
        (events, conn.stats().skipped_bytes)
    };
    let whole = run(usize::MAX);
    for chunk in [1, 3, 16, 17] {
        assert_eq!(run(chunk), whole, "chunks of {chunk}");
    }
    let ops = whole
        .0
        .into_iter()
        .filter_map(|e| match e {
            Event::Mongo(o) => Some(o),
            _ => None,
        })
        .collect();
    (ops, whole.1)
}

/// The MongoDB 3.0 shell: every request with responseTo -1, a command, a find on a collection
/// (results with no `ok`), and `it` (OP_GET_MORE).
fn shell_session() -> Vec<(Direction, Vec<u8>)> {
    let insert = doc(&[
        ("insert", V::Str("users".into())),
        (
            "documents",
            V::Arr(vec![V::Doc(vec![("_id".into(), V::F64(1.0))])]),
        ),
        ("ordered", V::Bool(true)),
    ]);
    let find = doc(&[("name", V::Str("ada".into()))]);
    vec![
        (C, op_query(1, MINUS_ONE, "test.$cmd", 0, -1, &insert)),
        (
            S,
            op_reply(
                2001,
                1,
                AWAIT_CAPABLE,
                0,
                &[doc(&[("ok", V::F64(1.0)), ("n", V::I32(1))])],
            ),
        ),
        (C, op_query(2, MINUS_ONE, "test.users", 4, 0, &find)),
        (
            S,
            op_reply(2002, 2, AWAIT_CAPABLE, 99, &[user(1), user(2), user(3)]),
        ),
        (C, op_get_more(3, MINUS_ONE, "test.users", 99)),
        (S, op_reply(2003, 3, AWAIT_CAPABLE, 0, &[user(4), user(5)])),
    ]
}

fn assert_shell_session(ops: &[Operation]) {
    let got: Vec<_> = ops
        .iter()
        .map(|o| {
            (
                o.request_id,
                o.command(),
                o.collection(),
                o.outcome,
                o.ok,
                o.errmsg(),
                o.code,
                o.n,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                Some(1),
                Some("insert"),
                Some("users"),
                Outcome::Ok,
                Some(1.0),
                None,
                None,
                Some(1)
            ),
            // A user's `ok: 0`, `errmsg` and `code` are data: not read, and no error.
            (
                Some(2),
                Some("OP_QUERY(find)"),
                Some("users"),
                Outcome::Ok,
                None,
                None,
                None,
                None
            ),
            (
                Some(3),
                Some("OP_GET_MORE"),
                Some("users"),
                Outcome::Ok,
                None,
                None,
                None,
                None
            ),
        ]
    );
    let docs: Vec<_> = ops
        .iter()
        .map(|o| (o.number_returned, o.batch_docs, o.cursor_id, o.reply_flags))
        .collect();
    assert_eq!(
        docs,
        [
            (Some(1), 0, None, Some(8)),
            (Some(3), 3, Some(99), Some(8)),
            (Some(2), 2, Some(0), Some(8)),
        ]
    );
}

/// Item 2 of issue 16: the shell's requests (responseTo -1) are requests, from the first
/// byte of a connection or found mid-stream.
#[test]
fn legacy_shell_requests_with_response_to_minus_one() {
    let turns = shell_session();
    // From the connection's first byte (no port hint: the header alone says MongoDB).
    assert_shell_session(&operations(&turns, Limits::default()));
    // Joined inside the connection: each side starts with the end of a message before.
    let earlier_request = op_query(
        9,
        MINUS_ONE,
        "test.$cmd",
        0,
        -1,
        &doc(&[
            ("insert", V::Str("users".into())),
            (
                "documents",
                V::Arr(
                    (0..20)
                        .map(|i| V::Doc(vec![("_id".into(), V::I32(i))]))
                        .collect(),
                ),
            ),
        ]),
    );
    let earlier_reply = op_reply(2000, 9, AWAIT_CAPABLE, 0, &[user(7), user(8)]);
    let client_tail = earlier_request[earlier_request.len() - 150..].to_vec();
    let server_tail = earlier_reply[earlier_reply.len() - 90..].to_vec();
    let mut joined = vec![(S, server_tail), (C, client_tail)];
    joined.extend(turns.iter().cloned());
    let (ops, skipped) = joined_mid_stream(&joined);
    assert_shell_session(&ops);
    assert_eq!(skipped, 150 + 90);
    // And joined at a request: the same records, nothing skipped.
    let (ops, skipped) = joined_mid_stream(&turns);
    assert_shell_session(&ops);
    assert_eq!(skipped, 0);
}

/// Accepting any responseTo on a legacy request leaves the other checks as strict: near
/// misses on the client's side are skipped byte by byte, never taken for a request.
#[test]
fn other_plausibility_checks_still_reject_junk() {
    let filler = vec![b'x'; 11];
    let mut junk = Vec::new();
    let near_misses = [
        // OP_QUERY with a reserved flag bit.
        {
            let mut m = header(60, 5, MINUS_ONE, 2004);
            m.extend_from_slice(&0x100u32.to_le_bytes());
            m
        },
        // OP_GET_MORE whose ZERO word is not zero.
        {
            let mut m = header(60, 5, MINUS_ONE, 2005);
            m.extend_from_slice(&7u32.to_le_bytes());
            m
        },
        // Longer than any message.
        header(49_000_000, 5, MINUS_ONE, 2004),
        // An opcode no client sends (OP_GET_BY_OID, removed; OP_REPLY).
        header(60, 5, MINUS_ONE, 2003),
        header(60, 5, 9, 1),
        // OP_MSG with a reply's responseTo.
        {
            let mut m = header(60, 5, 9, 2013);
            m.extend_from_slice(&[0, 0, 0, 0, 0]);
            m
        },
    ];
    for miss in &near_misses {
        junk.extend_from_slice(miss);
        junk.extend_from_slice(&filler);
    }
    let ping = doc(&[("ping", V::F64(1.0))]);
    let ok = doc(&[("ok", V::F64(1.0))]);
    // The server's side speaks first, with the end of a reply: the connection is joined
    // mid-stream and both sides search for a message start. (A connection's very first bytes
    // are judged by their header alone, as the sniffer does.)
    let turns = vec![
        (S, vec![b'y'; 20]),
        (
            C,
            [
                junk.clone(),
                op_query(6, MINUS_ONE, "admin.$cmd", 0, -1, &ping),
            ]
            .concat(),
        ),
        (S, op_reply(3000, 6, AWAIT_CAPABLE, 0, &[ok])),
    ];
    let (ops, skipped) = joined_mid_stream(&turns);
    assert_eq!(ops.len(), 1, "{ops:#?}");
    assert_eq!(
        (ops[0].request_id, ops[0].command(), ops[0].outcome),
        (Some(6), Some("ping"), Outcome::Ok)
    );
    assert_eq!(skipped, 20 + junk.len() as u64);
}

/// Item 3 of issue 16: a legacy OP_REPLY's success is its flags; `ok` is a command's.
#[test]
fn legacy_reply_success_is_decided_by_flags_and_ok_only_by_commands() {
    let q = |id: u32, ns: &str, query: &[u8]| (C, op_query(id, MINUS_ONE, ns, 0, 0, query));
    let r = |id: u32, flags: u32, cursor: i64, docs: &[Vec<u8>]| {
        (S, op_reply(2000 + id, id, flags, cursor, docs))
    };
    let empty = doc(&[]);
    let turns = vec![
        // A find whose results carry fields named ok/errmsg/code: success.
        q(1, "test.users", &empty),
        r(1, AWAIT_CAPABLE, 42, &[user(1), user(2)]),
        // A getMore whose cursor is gone: CursorNotFound, no document.
        (C, op_get_more(2, MINUS_ONE, "test.users", 42)),
        r(2, 1, 0, &[]),
        // A find that fails: QueryFailure, with `$err` and `code`.
        q(
            3,
            "test.users",
            &doc(&[("a", V::Doc(vec![("$bad".into(), V::I32(1))]))]),
        ),
        r(
            3,
            2,
            0,
            &[doc(&[
                ("$err", V::Str("BadValue unknown operator: $bad".into())),
                ("code", V::I32(17287)),
            ])],
        ),
        // Commands: `ok` decides, a missing `ok` is an error.
        q(4, "test.$cmd", &doc(&[("drop", V::Str("gone".into()))])),
        r(
            4,
            AWAIT_CAPABLE,
            0,
            &[doc(&[
                ("ok", V::F64(0.0)),
                ("errmsg", V::Str("ns not found".into())),
            ])],
        ),
        q(5, "test.$cmd", &doc(&[("ping", V::F64(1.0))])),
        r(5, AWAIT_CAPABLE, 0, &[doc(&[("pong", V::Bool(true))])]),
        // A command answered with a `$err` document and no flag (an old server's way).
        q(6, "test.$cmd", &doc(&[("count", V::Str("users".into()))])),
        r(
            6,
            0,
            0,
            &[doc(&[
                ("$err", V::Str("not master".into())),
                ("code", V::I32(10107)),
            ])],
        ),
        // `db.$cmd.sys.inprog` (the 3.0 shell's currentOp) is a query: its document is a
        // result.
        q(7, "admin.$cmd.sys.inprog", &empty),
        r(7, AWAIT_CAPABLE, 0, &[doc(&[("inprog", V::Arr(vec![]))])]),
    ];
    let ops = operations(&turns, Limits::default());
    let got: Vec<_> = ops
        .iter()
        .map(|o| (o.request_id.unwrap(), o.outcome, o.ok, o.errmsg(), o.code))
        .collect();
    assert_eq!(
        got,
        [
            (1, Outcome::Ok, None, None, None),
            (2, Outcome::CursorNotFound, None, None, None),
            (
                3,
                Outcome::QueryFailure,
                None,
                Some("BadValue unknown operator: $bad"),
                Some(17287)
            ),
            (4, Outcome::Error, Some(0.0), Some("ns not found"), None),
            (5, Outcome::Error, None, None, None),
            (
                6,
                Outcome::QueryFailure,
                None,
                Some("not master"),
                Some(10107)
            ),
            (7, Outcome::Ok, None, None, None),
        ]
    );
    assert_eq!(Outcome::CursorNotFound.as_str(), "CURSOR_NOT_FOUND");
    // The wire's flags are reported as they were.
    let flags: Vec<_> = ops.iter().map(|o| o.reply_flags).collect();
    assert_eq!(
        flags,
        [
            Some(8),
            Some(1),
            Some(2),
            Some(8),
            Some(8),
            Some(0),
            Some(8)
        ]
    );
    let docs: Vec<_> = ops.iter().map(|o| (o.batch_docs, o.cursor_id)).collect();
    assert_eq!(
        docs,
        [
            (2, Some(42)),
            (0, None),
            (0, None),
            (0, None),
            (0, None),
            (0, None),
            (1, Some(0))
        ]
    );
}

/// Replies whose request the capture missed: a legacy one is a command's when its first
/// document has `ok`, else it holds results.
#[test]
fn orphan_legacy_replies_are_read_by_their_first_document() {
    let turns = vec![
        (
            S,
            op_reply(
                4001,
                50,
                AWAIT_CAPABLE,
                0,
                &[doc(&[
                    ("ok", V::F64(0.0)),
                    ("errmsg", V::Str("unauthorized".into())),
                    ("code", V::I32(13)),
                ])],
            ),
        ),
        (
            S,
            op_reply(
                4002,
                51,
                AWAIT_CAPABLE,
                5,
                &[doc(&[("a", V::I32(1))]), doc(&[("b", V::I32(2))])],
            ),
        ),
        (
            S,
            op_reply(
                4003,
                52,
                2,
                0,
                &[doc(&[("$err", V::Str("bad".into())), ("code", V::I32(2))])],
            ),
        ),
        (S, op_reply(4004, 53, 1, 0, &[])),
    ];
    let ops = operations(&turns, Limits::default());
    let got: Vec<_> = ops
        .iter()
        .map(|o| {
            (
                o.flags.orphan,
                o.outcome,
                o.ok,
                o.errmsg(),
                o.code,
                o.batch_docs,
                o.cursor_id,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                true,
                Outcome::Error,
                Some(0.0),
                Some("unauthorized"),
                Some(13),
                0,
                None
            ),
            (true, Outcome::Ok, None, None, None, 2, Some(5)),
            (
                true,
                Outcome::QueryFailure,
                None,
                Some("bad"),
                Some(2),
                0,
                None
            ),
            (true, Outcome::CursorNotFound, None, None, None, 0, None),
        ]
    );
}

/// A write error's message is kept next to its code, bounded like the other texts, and shown
/// by `Debug` only as its length.
#[test]
fn write_errors_keep_code_and_message() {
    let dup = "E11000 duplicate key error collection: shop.items index: _id_ dup key: { _id: 1 }";
    let long = "E11000 duplicate key error collection: shop.items index: name_1 dup key: { name: \""
        .to_owned()
        + &"n".repeat(150) + "\" }";
    let error = |index: i32, code: Option<i32>, errmsg: &str| {
        let mut fields = vec![("index".to_owned(), V::I32(index))];
        if let Some(code) = code {
            fields.push(("code".into(), V::I32(code)));
        }
        fields.push(("errmsg".into(), V::Str(errmsg.to_owned())));
        V::Doc(fields)
    };
    let mut errors = vec![
        error(0, Some(11000), dup),
        // No code: not a write error the record can report.
        error(1, None, "??"),
        error(2, Some(11000), &long),
        error(3, Some(121), "Document failed validation"),
    ];
    errors.extend((4..14).map(|i| error(i, Some(11000), dup)));
    let insert = doc(&[
        ("insert", V::Str("items".into())),
        ("$db", V::Str("shop".into())),
    ]);
    let turns = vec![
        (C, op_msg(1, 0, 0, &insert, &[], false)),
        (
            S,
            ok_reply(100, 1, &[("n", V::I32(1)), ("writeErrors", V::Arr(errors))]),
        ),
        // The legacy shell's insert, answered in an OP_REPLY.
        (
            C,
            op_query(
                2,
                MINUS_ONE,
                "shop.$cmd",
                0,
                -1,
                &doc(&[("insert", V::Str("items".into()))]),
            ),
        ),
        (
            S,
            op_reply(
                101,
                2,
                AWAIT_CAPABLE,
                0,
                &[doc(&[
                    ("ok", V::F64(1.0)),
                    ("n", V::I32(0)),
                    ("writeErrors", V::Arr(vec![error(0, Some(11000), dup)])),
                ])],
            ),
        ),
    ];
    let ops = operations(&turns, Limits::default());
    let w = &ops[0];
    assert_eq!(w.outcome, Outcome::WriteError);
    assert_eq!(
        w.write_error_codes(),
        [11000, 11000, 121, 11000, 11000, 11000, 11000, 11000]
    );
    let errors: Vec<_> = w.write_errors().collect();
    assert_eq!(errors.len(), 8);
    assert_eq!(errors[0], (11000, Some(dup)));
    // Up to 128 bytes of a message.
    assert_eq!(errors[1], (11000, Some(&long[..128])));
    assert_eq!(errors[2], (121, Some("Document failed validation")));
    // Past the record's room for texts: cut, then none.
    assert_eq!(errors[7], (11000, None));
    assert!(w.text_cut());
    let shown = format!("{w:?}");
    assert!(
        !shown.contains("E11000")
            && !shown.contains("validation")
            && shown
                .contains("write_errors: [(11000, Some(81)), (11000, Some(128)), (121, Some(26))"),
        "{shown}"
    );
    let legacy = &ops[1];
    assert_eq!(
        (
            legacy.outcome,
            legacy.write_errors().collect::<Vec<_>>(),
            legacy.text_cut()
        ),
        (Outcome::WriteError, vec![(11000, Some(dup))], false)
    );
}

#[test]
fn pending_requests_are_bounded() {
    let ping = doc(&[("ping", V::I32(1)), ("$db", V::Str("admin".into()))]);
    let mut turns: Vec<_> = (1..=5)
        .map(|id| (C, op_msg(id, 0, 0, &ping, &[], false)))
        .collect();
    turns.push((S, ok_reply(500, 5, &[])));
    let ops = operations(&turns, Limits::default().max_pending(2));
    // The three oldest were given up on as the bound was reached, the fourth when the server's
    // side ended; the last one paired.
    let missing = ops.iter().filter(|o| o.outcome == Outcome::Missing).count();
    assert_eq!(missing, 4);
    assert!(
        ops.iter()
            .any(|o| o.request_id == Some(5) && o.outcome == Outcome::Ok)
    );
}

fn value() -> impl Strategy<Value = V> {
    let leaf = prop_oneof![
        "[a-zA-Z0-9 ]{0,20}".prop_map(V::Str),
        any::<i32>().prop_map(V::I32),
        any::<i64>().prop_map(V::I64),
        (-1e9f64..1e9).prop_map(V::F64),
        any::<bool>().prop_map(V::Bool),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(("[a-z]{1,8}", inner.clone()), 0..4).prop_map(V::Doc),
            prop::collection::vec(inner, 0..4).prop_map(V::Arr),
        ]
    })
}

proptest! {
    #[test]
    fn the_walker_reads_back_what_was_encoded(fields in prop::collection::vec(("[a-z$]{1,10}", value()), 1..8)) {
        let bytes = encode(&fields);
        let d = Doc::new(&bytes).unwrap();
        let keys: Vec<&[u8]> = d.elements().map(|e| e.key).collect();
        let expected: Vec<&[u8]> = fields.iter().map(|(k, _)| k.as_bytes()).collect();
        prop_assert_eq!(keys, expected);
        for (e, (_, v)) in d.elements().zip(&fields) {
            match v {
                V::Str(s) => prop_assert_eq!(e.as_str(), Some(s.as_bytes())),
                V::I32(i) => prop_assert_eq!(e.as_i64(), Some(i64::from(*i))),
                V::I64(i) => prop_assert_eq!(e.as_i64(), Some(*i)),
                V::F64(f) => prop_assert_eq!(e.as_f64(), Some(*f)),
                V::Bool(b) => prop_assert_eq!(e.as_f64(), Some(f64::from(u8::from(*b)))),
                V::Doc(inner) => prop_assert_eq!(e.as_doc().unwrap().elements().count(), inner.len()),
                V::Arr(inner) => prop_assert_eq!(e.as_doc().unwrap().elements().count(), inner.len()),
            }
        }
    }

    #[test]
    fn generated_conversations_decode_exactly_in_any_chunking(
        commands in prop::collection::vec(("[a-z]{1,12}", "[a-z]{1,8}", any::<bool>(), 0usize..5, any::<bool>()), 1..6),
        cut in 1usize..40,
    ) {
        let mut turns = Vec::new();
        let mut want = Vec::new();
        for (i, (name, coll, fail, docs, checksum)) in commands.iter().enumerate() {
            let id = i as u32 + 1;
            let body = doc(&[(name.as_str(), V::Str(coll.clone())), ("$db", V::Str("db".into()))]);
            let seq: Vec<Vec<u8>> = (0..*docs).map(|d| doc(&[("d", V::I32(d as i32))])).collect();
            let seqs = if seq.is_empty() { vec![] } else { vec![("documents", seq)] };
            turns.push((C, op_msg(id, 0, 0, &body, &seqs, *checksum)));
            let reply = if *fail {
                op_msg(1000 + id, id, 0, &doc(&[("ok", V::F64(0.0)), ("code", V::I32(59))]), &[], false)
            } else {
                ok_reply(1000 + id, id, &[])
            };
            turns.push((S, reply));
            want.push((name.clone(), coll.clone(), if *fail { Outcome::Error } else { Outcome::Ok }, *docs as u32));
        }
        let whole = common::run(&turns, usize::MAX, Limits::default(), 1_000_000);
        prop_assert_eq!(&common::run(&turns, cut, Limits::default(), 1_000_000), &whole);
        let got: Vec<(String, String, Outcome, u32)> = whole
            .iter()
            .filter_map(|e| match e {
                Event::Mongo(o) => Some((
                    o.command().unwrap().to_owned(),
                    o.collection().unwrap().to_owned(),
                    o.outcome,
                    o.sequences().map(|(_, n)| n).sum(),
                )),
                _ => None,
            })
            .collect();
        prop_assert_eq!(got, want);
    }
}
