//! Shared by the peerx tests: fixture loading, JSON rendering of views, and driving an exchange.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of this; panics report failures

use std::path::Path;

use bytes::Bytes;
use peerx::{Config, Event, Exchange, StructView, Timestamp, ValueView};

pub(crate) fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

pub(crate) fn truth(name: &str) -> serde_json::Value {
    serde_json::from_slice(&data(&format!("{name}.json"))).unwrap()
}

/// Every vector's base name, in order.
pub(crate) fn vector_names() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".bin").map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// The protobuf JSON mapping of a view.
pub(crate) fn to_json(value: ValueView<'_>) -> serde_json::Value {
    match value {
        ValueView::Null => serde_json::Value::Null,
        ValueView::Number(n) => serde_json::json!(n),
        ValueView::String(s) => serde_json::Value::String(s.to_owned()),
        ValueView::Bool(b) => serde_json::Value::Bool(b),
        ValueView::Struct(s) => struct_json(s),
        ValueView::List(l) => serde_json::Value::Array(l.iter().map(to_json).collect()),
        _ => unreachable!("no other value kinds"),
    }
}

pub(crate) fn struct_json(view: StructView<'_>) -> serde_json::Value {
    serde_json::Value::Object(
        view.iter()
            .map(|(k, v)| (k.to_owned(), to_json(v)))
            .collect(),
    )
}

/// What one receiving side observed: events (Forward folded into the application stream) and
/// the application bytes in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observed {
    pub(crate) events: Vec<String>,
    pub(crate) application: Vec<u8>,
}

/// Feeds `chunks` to a fresh receiving exchange (ALPN matched), then EOF if asked.
pub(crate) fn receive(chunks: &[&[u8]], config: Config, eof: bool) -> Observed {
    let mut ex = Exchange::new(config);
    ex.set_alpn(Timestamp(0), Some(b"istio-peer-exchange"));
    let mut out = Observed {
        events: Vec::new(),
        application: Vec::new(),
    };
    let drain = |ex: &mut Exchange, out: &mut Observed| {
        while let Some(event) = ex.poll_event() {
            match event {
                Event::Forward(bytes) => out.application.extend_from_slice(&bytes),
                Event::Peer(p) => {
                    out.events
                        .push(format!("Peer({:?} {:?})", p.type_url(), p.metadata()))
                }
                other => out.events.push(format!("{other:?}")),
            }
        }
    };
    for (i, chunk) in chunks.iter().enumerate() {
        match ex.feed(Timestamp(i as u64), chunk) {
            Ok(range) => {
                drain(&mut ex, &mut out);
                out.application.extend_from_slice(&chunk[range]);
            }
            Err(e) => {
                drain(&mut ex, &mut out);
                out.events.push(format!("Err({:?})", e.kind()));
                break;
            }
        }
    }
    if eof {
        ex.feed_eof(Timestamp(u64::MAX));
        drain(&mut ex, &mut out);
    }
    out
}

pub(crate) fn default_config() -> Config {
    Config::new(Bytes::from_static(b"frame"))
}
