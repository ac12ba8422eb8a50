//! MongoDB through the connection decoder: OP_MSG checksums and flag bits, kind-1 sequences with
//! any identifier, OP_COMPRESSED (noop, zlib, and a codec that is not built in), exhaust chains,
//! legacy replies, the pending bound; generated documents and conversations in any chunking.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use l7decode::mongo::bson::Doc;
use l7decode::mongo::wire::crc32c;
use l7decode::mongo::{Operation, Status};
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
    assert_eq!((ops[0].status, ops[0].n), (Status::Ok, Some(2)));
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
        (ops[1].status, ops[1].write_error_codes()),
        (Status::WriteError, &[11000][..])
    );
    assert_eq!(
        (
            ops[2].status,
            ops[2].code,
            ops[2].code_name(),
            ops[2].errmsg()
        ),
        (
            Status::Error,
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
        (ops[3].status, ops[3].more_to_come),
        (Status::NoResponseExpected, true)
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
        (ops[2].compressor, ops[2].command(), ops[2].status),
        (Some(3), None, Status::Ok)
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
            ops[0].status,
            ops[0].reply_flags
        ),
        (Some("count"), Some("legacy"), Status::QueryFailure, Some(2))
    );
    assert_eq!(
        (ops[1].command(), ops[1].collection(), ops[1].status),
        (Some("OP_INSERT"), Some("items"), Status::NoResponseExpected)
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
    let missing = ops.iter().filter(|o| o.status == Status::Missing).count();
    assert_eq!(missing, 4);
    assert!(
        ops.iter()
            .any(|o| o.request_id == Some(5) && o.status == Status::Ok)
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
            want.push((name.clone(), coll.clone(), if *fail { Status::Error } else { Status::Ok }, *docs as u32));
        }
        let whole = common::run(&turns, usize::MAX, Limits::default(), 1_000_000);
        prop_assert_eq!(&common::run(&turns, cut, Limits::default(), 1_000_000), &whole);
        let got: Vec<(String, String, Status, u32)> = whole
            .iter()
            .filter_map(|e| match e {
                Event::Mongo(o) => Some((
                    o.command().unwrap().to_owned(),
                    o.collection().unwrap().to_owned(),
                    o.status,
                    o.sequences().map(|(_, n)| n).sum(),
                )),
                _ => None,
            })
            .collect();
        prop_assert_eq!(got, want);
    }
}
