//! The encoder refuses what the decoder would reject (issue 17): `encode_frame` used to write
//! frames of 1.49 MB and lists nested 100 deep that `parse_frame` (and so every peer) refuses,
//! after which every connection of a proxy sending them failed. Here every bound is checked at
//! its edge, in frames and in the HTTP header variant, and a property ties the two together.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::collections::BTreeMap;

use peerx::{
    ErrorKind, Limits, Metadata, Status, Value, decode_peer_metadata_header, decoded_len_max,
    encode_base64, encode_frame, encode_frame_with_limits, parse_frame,
};
use proptest::prelude::*;

/// A string nested in `depth` lists (`depth` 0: the string itself).
fn lists(depth: usize) -> Value {
    (0..depth).fold(Value::from("leaf"), |inner, _| Value::List(vec![inner]))
}

/// A string nested in `depth` structs.
fn structs(depth: usize) -> Value {
    (0..depth).fold(Value::from("leaf"), |inner, _| {
        Value::Struct(BTreeMap::from([("k".to_owned(), inner)]))
    })
}

fn with(key: &str, value: Value) -> Metadata {
    Metadata::new(
        BTreeMap::from([
            ("NAME".to_owned(), Value::from("sleep-1")),
            (key.to_owned(), value),
        ]),
        Some("sidecar~node".to_owned()),
    )
}

/// What the old encoder wrote: no limit can refuse it.
fn unchecked(metadata: &Metadata) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame_with_limits(metadata, &Limits::unbounded_dangerous(), &mut out).unwrap();
    out
}

fn decodes(frame: &[u8], limits: &Limits) -> Result<(), ErrorKind> {
    match parse_frame(frame, limits) {
        Ok(Status::Complete { consumed, .. }) if consumed == frame.len() => Ok(()),
        Ok(other) => panic!("our own frame is incomplete: {other:?}"),
        Err(e) => Err(e.kind()),
    }
}

#[test]
fn lists_nested_100_deep_are_refused_as_the_decoder_refuses_them() {
    let metadata = with("LIST", lists(100));
    // The reproduction: such a frame can be written, and no peer reads it.
    assert_eq!(
        decodes(&unchecked(&metadata), &Limits::default()),
        Err(ErrorKind::TooDeep)
    );
    let mut out = Vec::new();
    let err = encode_frame(&metadata, &mut out).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooDeep);
    assert!(out.is_empty(), "nothing is written on an error");
}

#[test]
fn depth_is_refused_exactly_where_decoding_starts_to_fail() {
    for max_depth in [1_u16, 2, 5, 32] {
        let limits = Limits::default().max_depth(max_depth);
        for nest in [lists as fn(usize) -> Value, structs] {
            for depth in 0..usize::from(max_depth) + 3 {
                let metadata = with("DEEP", nest(depth));
                let decoded = decodes(&unchecked(&metadata), &limits);
                let mut out = Vec::new();
                let encoded = encode_frame_with_limits(&metadata, &limits, &mut out);
                assert_eq!(
                    encoded.map(|_| ()).map_err(|e| e.kind()),
                    decoded,
                    "max_depth {max_depth}, depth {depth}"
                );
                // The workload struct is the first level below the outer one.
                assert_eq!(
                    decoded.is_ok(),
                    depth < usize::from(max_depth),
                    "max_depth {max_depth}, depth {depth}"
                );
            }
        }
    }
    // No depth at all: not even the workload struct fits.
    let limits = Limits::default().max_depth(0);
    let err = encode_frame_with_limits(&Metadata::default(), &limits, &mut Vec::new());
    assert_eq!(err.unwrap_err().kind(), ErrorKind::TooDeep);
}

#[test]
fn oversized_metadata_is_refused_with_its_size() {
    // The 1.49 MB of the issue: labels of 20 KB values.
    let labels: BTreeMap<String, Value> = (0..75)
        .map(|i| (format!("label-{i}"), Value::String("x".repeat(20_000))))
        .collect();
    let metadata = with("LABELS", Value::Struct(labels));
    let frame = unchecked(&metadata);
    assert!(frame.len() > 1_490_000, "{}", frame.len());
    assert!(matches!(
        decodes(&frame, &Limits::default()),
        Err(ErrorKind::PayloadTooLarge { .. })
    ));
    let mut out = Vec::new();
    let err = encode_frame(&metadata, &mut out).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::PayloadTooLarge {
            limit: 64 * 1024,
            declared: u32::try_from(frame.len() - 8).unwrap(),
        }
    );
    assert_eq!(err.offset(), 4, "where the header's length lies");
    assert!(out.is_empty());
}

#[test]
fn the_largest_payload_the_limit_allows_is_written_and_one_byte_more_is_not() {
    let limit = Limits::default().max_payload;
    // Grow a value until the payload is exactly at the limit (no varint length changes size
    // near 64 KiB, so the payload grows a byte at a time there).
    let base = unchecked(&with("PAD", Value::from(""))).len() - 8;
    let mut pad = usize::try_from(limit).unwrap() - base - 64;
    let size = |pad: usize| unchecked(&with("PAD", Value::String("p".repeat(pad)))).len() - 8;
    while size(pad) < usize::try_from(limit).unwrap() {
        pad += 1;
    }
    assert_eq!(size(pad), usize::try_from(limit).unwrap());
    let at_limit = with("PAD", Value::String("p".repeat(pad)));
    let mut out = Vec::new();
    let written = encode_frame(&at_limit, &mut out).unwrap();
    assert_eq!(written, out.len());
    assert_eq!(decodes(&out, &Limits::default()), Ok(()));

    let over = with("PAD", Value::String("p".repeat(pad + 1)));
    let err = encode_frame(&over, &mut Vec::new()).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::PayloadTooLarge {
            limit,
            declared: limit + 1
        }
    );
    // A caller whose peers accept more says so.
    let mut out = Vec::new();
    encode_frame_with_limits(&over, &Limits::default().max_payload(limit + 1), &mut out).unwrap();
    assert_eq!(
        decodes(&out, &Limits::default().max_payload(limit + 1)),
        Ok(())
    );
}

#[test]
fn the_header_variant_counts_depth_from_the_inner_struct() {
    for max_depth in [1_u16, 3, 32] {
        let limits = Limits::default().max_depth(max_depth);
        for depth in 0..usize::from(max_depth) + 3 {
            let metadata = with("DEEP", lists(depth));
            let mut inner = Vec::new();
            metadata.encode_peer_struct(&mut inner);
            let mut text = Vec::new();
            let n = encode_base64(&inner, &mut text).unwrap();
            let mut scratch = vec![0; decoded_len_max(n)];
            let decoded = decode_peer_metadata_header(&text[..n], &mut scratch, &limits)
                .map(|_| ())
                .map_err(|e| e.kind());
            let mut checked = Vec::new();
            let encoded = metadata
                .encode_peer_struct_with_limits(&limits, &mut checked)
                .map_err(|e| e.kind());
            assert_eq!(encoded.map(|_| ()), decoded, "{max_depth} {depth}");
            if encoded.is_ok() {
                assert_eq!(checked, inner);
            } else {
                assert!(checked.is_empty());
            }
        }
    }
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        "[a-z]{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(8, 64, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4).prop_map(Value::Struct),
        ]
    })
}

proptest! {
    #[test]
    fn the_encoder_refuses_exactly_what_the_decoder_rejects(
        peer in proptest::collection::btree_map("[A-Z]{1,8}", value(), 0..5),
        max_payload in 40_u32..600,
        max_depth in 0_u16..8,
    ) {
        let metadata = Metadata::new(peer, Some("node".to_owned()));
        let limits = Limits::default().max_payload(max_payload).max_depth(max_depth);
        let frame = unchecked(&metadata);
        let mut out = Vec::new();
        let encoded = encode_frame_with_limits(&metadata, &limits, &mut out);
        match parse_frame(&frame, &limits) {
            Ok(Status::Complete { .. }) => {
                prop_assert_eq!(encoded.unwrap(), frame.len());
                prop_assert_eq!(out, frame);
            }
            Ok(Status::Partial { .. }) => panic!("our own frame is incomplete"),
            Err(e) => {
                // The decoder checks the header's size before walking the payload; the encoder
                // reports depth first. Either way it refuses, with one of the decoder's reasons.
                let kind = encoded.unwrap_err().kind();
                prop_assert!(out.is_empty());
                let both = matches!(e.kind(), ErrorKind::PayloadTooLarge { .. })
                    && kind == ErrorKind::TooDeep;
                prop_assert!(kind == e.kind() || both, "{:?} vs {:?}", kind, e);
            }
        }
    }
}
