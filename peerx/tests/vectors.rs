//! Every shared vector (made with Google's protobuf) as a golden test: the tier-1 outcome and
//! fields, and the exchange machine's events and forwarded bytes in every chunking.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use common::*;
use peerx::{ErrorKind, Exchange, Limits, NoPeerReason, Status, Timestamp, parse_frame};

fn expected_error(name: &str) -> Option<ErrorKind> {
    Some(match &name[..3] {
        "14_" => ErrorKind::PayloadTooLarge {
            limit: 65536,
            declared: u32::MAX,
        },
        "15_" => ErrorKind::EmptyPayload,
        "16_" => ErrorKind::Protobuf,
        "17a" | "18_" | "20_" => ErrorKind::WrongTypeUrl,
        "17b" => ErrorKind::NotUtf8,
        _ => return None,
    })
}

#[test]
fn tier1_outcome_and_fields_of_every_vector() {
    let names = vector_names();
    assert_eq!(names.len(), 23);
    for name in &names {
        let bytes = data(&format!("{name}.bin"));
        let truth = truth(name);
        let result = parse_frame(&bytes, &Limits::default());
        let outcome = match &result {
            Ok(Status::Partial { .. }) => "incomplete",
            Ok(Status::Complete { value, .. }) if value.metadata().peer().is_some() => "peer",
            Ok(Status::Complete { .. }) => "no_peer",
            Err(e) if matches!(e.kind(), ErrorKind::BadMagic { .. }) => "not_exchange",
            Err(_) => "malformed",
        };
        assert_eq!(
            outcome,
            testkit::peerx_vector_outcome(name),
            "{name}: {result:?}"
        );
        if let Some(kind) = expected_error(name) {
            assert_eq!(result.as_ref().unwrap_err().kind(), kind, "{name}");
        }
        if let Ok(Status::Partial { needed }) = result {
            // The exact shortfall: to the header, then to the declared payload.
            let total = truth["header"]["data_size"]
                .as_u64()
                .map_or(8, |n| 8 + n as usize);
            assert_eq!(bytes.len() + needed.unwrap().get(), total, "{name}");
        }
        let Ok(Status::Complete { value, consumed }) = result else {
            continue;
        };
        assert_eq!(
            value.data_size() as u64,
            truth["header"]["data_size"].as_u64().unwrap()
        );
        assert_eq!(
            value.type_url(),
            truth["payload"]["any_type_url"].as_str().unwrap()
        );
        assert_eq!(
            bytes.len() - consumed,
            truth["trailing_bytes_len"].as_u64().unwrap() as usize,
            "{name}"
        );
        let outer = value.metadata().outer();
        assert_eq!(
            struct_json(outer),
            truth["payload"]["struct_json"],
            "{name}"
        );
        let order: Vec<&str> = outer.iter().map(|(k, _)| k).collect();
        let wire_order: Vec<&str> = truth["payload"]["struct_key_order_on_wire"]
            .as_array()
            .map(|a| a.iter().map(|k| k.as_str().unwrap()).collect())
            .unwrap_or_default();
        if !wire_order.is_empty() {
            assert_eq!(order, wire_order, "{name}");
        }
        assert_eq!(
            value.metadata().id(),
            truth["payload"]["struct_json"]["x-envoy-peer-metadata-id"].as_str()
        );
        // Vectors 21 and 22 repeat vector 02's frame; the truth names the peer only once.
        let Some(expected) = truth
            .get("expected_peer_reference_mapping")
            .filter(|v| v.is_object())
        else {
            continue;
        };
        let w = value.metadata().workload().unwrap();
        let got = serde_json::json!({
            "instance_name": w.instance_name, "namespace": w.namespace, "workload_name": w.workload_name,
            "cluster": w.cluster, "identity": w.identity, "region": w.region, "zone": w.zone,
            "canonical_name": w.canonical_name, "canonical_revision": w.canonical_revision,
            "app_name": w.app_name, "app_version": w.app_version, "workload_type": w.workload_type.as_str(),
        });
        for (key, value) in got.as_object().unwrap() {
            assert_eq!(Some(value), expected.get(key), "{name}: {key}");
        }
        if let Some(extra) = expected.get("additional_labels") {
            let keys = ["role"];
            let labels: serde_json::Map<String, serde_json::Value> = w
                .additional_labels(&keys)
                .map(|(k, v)| (k.to_owned(), v.into()))
                .collect();
            assert_eq!(&serde_json::Value::Object(labels), extra, "{name}");
        }
    }
}

/// The application stream a receiver must produce for each vector.
fn expected_application(name: &str, bytes: &[u8]) -> Vec<u8> {
    let truth = truth(name);
    match testkit::peerx_vector_outcome(name) {
        "peer" | "no_peer" => {
            bytes[bytes.len() - truth["trailing_bytes_len"].as_u64().unwrap() as usize..].to_vec()
        }
        // Not a frame, malformed (pass-through policy), or incomplete at EOF: every byte goes on.
        _ => bytes.to_vec(),
    }
}

#[test]
fn exchange_on_every_vector_in_every_chunking() {
    for name in vector_names() {
        let bytes = data(&format!("{name}.bin"));
        let observed = testkit::assert_chunking_invariant(&bytes, 24, |chunks| {
            receive(chunks, default_config(), true)
        });
        assert_eq!(
            observed.application,
            expected_application(&name, &bytes),
            "{name}"
        );
        let first = observed.events.first().cloned().unwrap_or_default();
        match testkit::peerx_vector_outcome(&name) {
            "peer" | "no_peer" => assert!(first.starts_with("Peer("), "{name}: {first}"),
            "not_exchange" => assert!(first.starts_with("NoPeer(NotExchange"), "{name}: {first}"),
            "incomplete" => assert_eq!(
                first,
                format!("{:?}", peerx::Event::NoPeer(NoPeerReason::PeerClosed)),
                "{name}"
            ),
            _ => assert!(first.starts_with("NoPeer(Malformed"), "{name}: {first}"),
        }
        // The suggested chunkings of the vector file, too.
        if let Some(chunkings) = truth(&name)["suggested_chunkings"].as_array() {
            for sizes in chunkings {
                let mut chunks = Vec::new();
                let mut at = 0;
                for size in sizes.as_array().unwrap() {
                    let end = (at + size.as_u64().unwrap() as usize).min(bytes.len());
                    chunks.push(&bytes[at..end]);
                    at = end;
                }
                chunks.push(&bytes[at..]);
                assert_eq!(
                    receive(&chunks, default_config(), true),
                    observed,
                    "{name} {sizes}"
                );
            }
        }
    }
}

#[test]
fn close_policy_drops_malformed_frames_and_refuses_more_input() {
    let bytes = data("16_payload_not_protobuf.bin");
    let config = default_config().on_malformed(peerx::MalformedPolicy::Close);
    let observed = receive(&[&bytes, b"more"], config, false);
    assert!(observed.application.is_empty());
    assert_eq!(
        observed.events,
        vec![
            format!(
                "{:?}",
                peerx::Event::Close(NoPeerReason::Malformed(ErrorKind::Protobuf))
            ),
            "Err(Closed)".to_owned(),
        ]
    );
}

#[test]
fn close_policy_drops_a_frame_cut_short_but_passes_silence() {
    let close = || default_config().on_malformed(peerx::MalformedPolicy::Close);
    let alpn = Some(peerx::ISTIO_PEER_EXCHANGE_ALPN);
    // A header cut short by the peer's close, then by the timeout: the bytes were a frame's.
    let header = data("09_truncated_header.bin");
    for end in [EndBy::Eof, EndBy::Timeout] {
        let mut exchange = Exchange::new(close());
        exchange.set_alpn(Timestamp(0), alpn);
        let app = exchange.feed(Timestamp(1), &header).unwrap();
        assert!(app.is_empty());
        let reason = end.apply(&mut exchange);
        assert_eq!(
            exchange.poll_event(),
            Some(peerx::Event::Close(reason)),
            "{end:?}"
        );
        assert_eq!(exchange.poll_event(), None, "{end:?}: nothing handed back");
    }
    // Nothing at all before the close or the timeout: no frame, the connection goes on.
    for end in [EndBy::Eof, EndBy::Timeout] {
        let mut exchange = Exchange::new(close());
        exchange.set_alpn(Timestamp(0), alpn);
        let reason = end.apply(&mut exchange);
        assert_eq!(
            exchange.poll_event(),
            Some(peerx::Event::NoPeer(reason)),
            "{end:?}"
        );
        assert_eq!(exchange.poll_event(), None);
    }
}

#[derive(Debug, Clone, Copy)]
enum EndBy {
    Eof,
    Timeout,
}

impl EndBy {
    fn apply(self, exchange: &mut Exchange) -> NoPeerReason {
        match self {
            Self::Eof => {
                exchange.feed_eof(Timestamp(2));
                NoPeerReason::PeerClosed
            }
            Self::Timeout => {
                exchange.handle_timeout(Timestamp(u64::MAX));
                NoPeerReason::Timeout
            }
        }
    }
}

#[test]
fn http_header_variant_decodes_to_the_same_workload() {
    let value = data("http_header_x-envoy-peer-metadata.txt");
    let mut scratch = vec![0u8; peerx::decoded_len_max(value.len())];
    let inner =
        peerx::decode_peer_metadata_header(&value, &mut scratch, &Limits::default()).unwrap();
    let frame = data("02_modern_sender_realistic.bin");
    let Ok(Status::Complete { value: f, .. }) = parse_frame(&frame, &Limits::default()) else {
        panic!()
    };
    assert_eq!(
        peerx::Workload::from_struct(inner),
        f.metadata().workload().unwrap()
    );
    assert_eq!(
        inner.as_bytes(),
        f.metadata().peer().unwrap().as_bytes(),
        "same deterministic bytes"
    );
    // Re-encoding the inner struct gives the header value back, byte for byte.
    let owned = peerx::Metadata::from_view(&f.metadata());
    let mut inner_bytes = Vec::new();
    owned.encode_peer_struct(&mut inner_bytes);
    let mut text = Vec::new();
    let n = peerx::encode_base64(&inner_bytes, &mut text).unwrap();
    assert_eq!(
        std::str::from_utf8(&text[..n]).unwrap(),
        std::str::from_utf8(&value).unwrap().trim()
    );
    // Padding is optional on input.
    let unpadded = std::str::from_utf8(&value)
        .unwrap()
        .trim()
        .trim_end_matches('=');
    let mut scratch2 = vec![0u8; peerx::decoded_len_max(unpadded.len())];
    let again =
        peerx::decode_peer_metadata_header(unpadded.as_bytes(), &mut scratch2, &Limits::default())
            .unwrap();
    assert_eq!(again.as_bytes(), inner.as_bytes());
    assert_eq!(
        data("http_header_x-envoy-peer-metadata-id.txt").trim_ascii(),
        f.metadata().id().unwrap().as_bytes()
    );
}

#[test]
fn encoder_reproduces_google_protobuf_bytes() {
    // Vectors whose outer struct our encoder can express (owned form of the same metadata).
    for name in [
        "01_minimal_valid",
        "02_modern_sender_realistic",
        "03_legacy_flatnode_era_realistic",
        "04_exchange_keys_era_rich_value_kinds",
        "06_empty_inner_peer_struct",
    ] {
        let bytes = data(&format!("{name}.bin"));
        let Ok(Status::Complete { value, consumed }) = parse_frame(&bytes, &Limits::default())
        else {
            panic!("{name}")
        };
        let owned = peerx::Metadata::from_view(&value.metadata());
        let mut out = Vec::new();
        let n = peerx::encode_frame(&owned, &mut out).unwrap();
        assert_eq!(n, consumed, "{name}");
        assert_eq!(
            out,
            &bytes[..consumed],
            "{name}: byte-identical to the deterministic C++-order serialization"
        );
    }
}
