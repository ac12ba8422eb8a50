//! Property tests: encode → decode round trips, byte equality with prost-types' deterministic
//! encoding, every strict prefix is `Partial`, and the exchange is chunking-invariant.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use std::collections::BTreeMap;

use common::*;
use peerx::{Limits, Metadata, Status, Value, encode_frame, parse_frame};
use proptest::prelude::*;
use prost::Message;

fn key(allow_empty: bool) -> impl Strategy<Value = String> {
    let min = usize::from(!allow_empty);
    proptest::string::string_regex(&format!("[a-zA-Z0-9_./-]{{{min},12}}")).unwrap()
}

fn value(allow_empty_keys: bool) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        (-1e12f64..1e12).prop_map(Value::Number),
        any::<bool>().prop_map(Value::Bool),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            proptest::collection::btree_map(key(allow_empty_keys), inner, 0..4)
                .prop_map(Value::Struct),
        ]
    })
}

fn metadata(allow_empty_keys: bool) -> impl Strategy<Value = Metadata> {
    (
        proptest::collection::btree_map(key(allow_empty_keys), value(allow_empty_keys), 0..6),
        proptest::option::of(".{1,30}"),
    )
        .prop_map(|(peer, id)| Metadata::new(peer, id))
}

fn encode(m: &Metadata) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(m, &mut out).unwrap();
    out
}

fn to_prost(v: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Number(n) => Kind::NumberValue(*n),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Struct(m) => Kind::StructValue(prost_struct(m)),
        Value::List(l) => Kind::ListValue(prost_types::ListValue {
            values: l.iter().map(to_prost).collect(),
        }),
        _ => unreachable!(),
    };
    prost_types::Value { kind: Some(kind) }
}

fn prost_struct(m: &BTreeMap<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: m.iter().map(|(k, v)| (k.clone(), to_prost(v))).collect(),
    }
}

proptest! {
    #[test]
    fn encode_then_decode_round_trips(m in metadata(true), trailing in proptest::collection::vec(any::<u8>(), 0..16)) {
        let mut bytes = encode(&m);
        let frame_len = bytes.len();
        bytes.extend_from_slice(&trailing);
        let Ok(Status::Complete { value, consumed }) = parse_frame(&bytes, &Limits::default()) else {
            panic!("our own frame parses");
        };
        prop_assert_eq!(consumed, frame_len);
        let back = Metadata::from_view(&value.metadata());
        let expected_id = m.id.clone().filter(|id| !id.is_empty());
        prop_assert_eq!(back.peer, m.peer);
        prop_assert_eq!(back.id, expected_id);
    }

    #[test]
    fn bytes_equal_prost_types_deterministic_encoding(m in metadata(false)) {
        // prost writes maps in BTreeMap (bytewise) order, as Envoy's C++ does; with non-empty keys
        // the two encodings must agree to the byte.
        let mut outer = BTreeMap::new();
        outer.insert(peerx::PEER_METADATA_KEY.to_owned(), Value::Struct(m.peer.clone()));
        if let Some(id) = &m.id {
            outer.insert(peerx::PEER_METADATA_ID_KEY.to_owned(), Value::String(id.clone()));
        }
        let any = prost_types::Any { type_url: peerx::STRUCT_TYPE_URL.into(), value: prost_struct(&outer).encode_to_vec() };
        let payload = any.encode_to_vec();
        let mut expected = peerx::MAGIC.to_be_bytes().to_vec();
        expected.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        expected.extend_from_slice(&payload);
        prop_assert_eq!(encode(&m), expected);
    }

    #[test]
    fn every_strict_prefix_is_partial_with_the_exact_shortfall(m in metadata(true)) {
        let bytes = encode(&m);
        for cut in 0..bytes.len() {
            match parse_frame(&bytes[..cut], &Limits::default()).unwrap() {
                Status::Partial { needed } => {
                    let target = if cut < 8 { 8 } else { bytes.len() };
                    prop_assert_eq!(cut + needed.unwrap().get(), target);
                }
                Status::Complete { .. } => panic!("complete at {cut}"),
            }
        }
    }

    #[test]
    fn exchange_is_chunking_invariant(m in metadata(true), app in proptest::collection::vec(any::<u8>(), 0..64), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let mut stream = encode(&m);
        stream.extend_from_slice(&app);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let split = testkit::split_at_points(&stream, &points);
        let whole = receive(&[&stream], default_config(), true);
        prop_assert_eq!(receive(&split, default_config(), true), whole.clone());
        prop_assert_eq!(whole.application, app);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_consumed_stays_in_bounds(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(Status::Complete { consumed, value }) = parse_frame(&data, &Limits::default()) {
            prop_assert!(consumed <= data.len());
            let _ = format!("{:?}", value.metadata());
        }
        let observed = receive(&[&data], default_config(), true);
        prop_assert!(observed.application.len() <= data.len());
    }
}
