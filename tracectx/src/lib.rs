//! `tracectx`: trace-context headers (W3C `traceparent`/`tracestate`/`baggage`, B3 multi and
//! single, Envoy's `x-request-id` with its trace-reason nibble, `x-client-trace-id`,
//! `x-envoy-force-trace`, `x-ot-span-context`): extract, validate, generate and inject with zero
//! allocations.
//!
//! Nothing here reads a clock or a random source: where randomness is needed (request ids, span
//! ids) the caller passes a [`RandomSource`], and every output is written into a caller buffer.
//! `no_std`, no `alloc`.
//!
//! Strict by default (lowercase hex, exact lengths, non-zero ids, W3C version rules, duplicates
//! invalid); each leniency is a named [`Config`] switch. Every rejection is an [`Error`] naming
//! the field and the byte.
//!
//! ```
//! use tracectx::{Config, extract_traceparent, extract_tracestate, write_traceparent, TRACEPARENT_LEN};
//!
//! let headers = [
//!     ("TraceParent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
//!     ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
//! ];
//! let config = Config::default();
//! let tp = extract_traceparent(&headers, &config).unwrap().unwrap();
//! assert!(tp.flags.is_sampled());
//! let state = extract_tracestate(&headers, &config).unwrap().unwrap();
//! assert_eq!(state.get(b"rojo"), Some(&b"00f067aa0ba902b7"[..]));
//!
//! // A child span: same trace, a new span id from the caller's random source.
//! let mut rng = |buf: &mut [u8]| buf.fill(7);
//! let child = tracectx::child_traceparent(&tp, &mut rng);
//! let mut out = [0u8; TRACEPARENT_LEN];
//! assert_eq!(write_traceparent(&child, &mut out), "00-4bf92f3577b34da6a3ce929d0e0e4736-0707070707070707-01");
//! ```
//!
//! # Forwarding
//! What a proxy sends on is written by this crate from what it validated, never copied from the
//! request: [`write_traceparent`], [`TraceState::write`], [`write_b3_single`], [`Members::write`]
//! (the well-formed baggage members re-encoded as one value within [`BAGGAGE_MAX_BYTES`] and
//! [`BAGGAGE_MAX_MEMBERS`], with a count of what was left out), and an `x-request-id` only after
//! [`validate_request_id`] (visible ASCII, at most [`REQUEST_ID_MAX_LEN`] bytes). None of them
//! can emit a control character, so none can split or extend a header on the next hop.
//!
//! Writers share one convention: the verb is `write_*` (or a `write` method), the output goes
//! into a caller buffer (`&mut [u8]`, a fixed-size array where the length is fixed, such as
//! [`TRACEPARENT_LEN`]) and the value written comes back as `&str` borrowed from it; nothing
//! allocates. Where a buffer can be too small the writer returns
//! [`ErrorKind::BufferTooSmall`]; the W3C writers instead keep whole members within the space
//! and report what they left out. To set the headers of an outgoing request in one call, the
//! `inject_*` functions ([`inject_traceparent`], [`inject_tracestate`], [`inject_b3_single`],
//! [`inject_b3_multi`], [`inject_baggage`]) write into any [`Injector`] (with the `http`
//! feature, `http::HeaderMap` is one).
//!
//! ```
//! use tracectx::{BAGGAGE_MAX_BYTES, Config, extract_baggage, validate_request_id};
//!
//! let headers = [("baggage", "user=alice, bad\r=1"), ("x-request-id", "abc\r\nx-admin: 1")];
//! let mut out = [0u8; BAGGAGE_MAX_BYTES];
//! let (baggage, written) = extract_baggage(&headers, &Config::default()).write(&mut out);
//! assert_eq!((baggage, written.invalid), ("user=alice", 1));
//! assert!(validate_request_id(b"abc\r\nx-admin: 1").is_err());
//! ```
//!
//! # Conformance against the anchors
//! Where the specs and the anchors disagree this crate follows the spec:
//!
//! | case | tracectx | Envoy | Brave | opentelemetry-rust 0.33 |
//! |---|---|---|---|---|
//! | uppercase hex in ids | invalid (opt-in leniency) | accepted | invalid | invalid |
//! | duplicate `traceparent` | invalid | first used | — | first used |
//! | `traceparent` version > 00, longer than 55 | accepted | rejected | — | accepted |
//! | W3C random flag | kept | — | — | lost |
//! | more than 32 `tracestate` members | list discarded | not parsed | — | truncated to 32 |
//! | repeated `tracestate` fields | combined | first only | — | first only |
//! | `b3` sampling only (`b3: 0`) | kept | kept | kept | lost |
//! | `b3` debug `d` | debug, sampled | sampled | debug | not sampled |
//! | invalid `b3` + valid multi | multi (or fail closed, configurable) | fails | multi | multi |
//! | trailing `-` in `b3` | invalid | invalid | invalid | accepted |
//! | `X-B3-Flags: 1` | debug | ignored | debug | debug |
//! | `baggage` `k=v=w` | value `v=w` | — | — | `v` |
//! | repeated `baggage` fields | combined | — | — | first only |

#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod b3;
mod baggage;
mod carrier;
mod config;
mod error;
mod ids;
#[cfg(feature = "ot")]
mod ot;
mod request_id;
mod w3c;

pub use b3::{
    B3, B3_SINGLE_MAX_LEN, B3Context, B3MultiBuf, extract_b3, extract_b3_multi, parse_b3_single,
    write_b3_multi, write_b3_single,
};
pub use baggage::{
    BAGGAGE_MAX_BYTES, BAGGAGE_MAX_MEMBERS, BaggageMember, BaggageWritten, Members,
    extract_baggage, percent_decode, write_baggage,
};
pub use carrier::{
    Carrier, Injector, TRACESTATE_INJECT_MAX_LEN, inject_b3_multi, inject_b3_single,
    inject_baggage, inject_traceparent, inject_tracestate,
};
pub use config::{Config, InvalidB3Single, KeyGrammar};
pub use error::{Error, ErrorKind, Field};
pub use ids::{Sampling, SpanId, TraceFlags, TraceId};
#[cfg(feature = "ot")]
#[cfg_attr(docsrs, doc(cfg(feature = "ot")))]
pub use ot::{OtSpanContext, decode_ot_span_context, write_ot_span_context};
pub use request_id::{
    Decision, REQUEST_ID_LEN, REQUEST_ID_MAX_LEN, RandomSource, SamplingConfig, TRACE_REASON_INDEX,
    TraceReason, decide, generate_request_id, request_id_integer, sampling_bucket,
    set_trace_reason, trace_reason, validate_request_id,
};
pub use w3c::{
    TRACEPARENT_LEN, TRACESTATE_MAX_MEMBERS, TraceParent, TraceState, extract_traceparent,
    extract_tracestate, extract_tracestate_into, parse_traceparent, write_traceparent,
};

/// A new span id from `rng`, never zero.
pub fn new_span_id(rng: &mut impl RandomSource) -> SpanId {
    loop {
        let mut bytes = [0u8; 8];
        rng.fill_bytes(&mut bytes);
        if bytes != [0; 8] {
            return SpanId(bytes);
        }
    }
}

/// The traceparent a proxy sends for a child span: same trace id and flags (random kept), a new
/// parent id.
pub fn child_traceparent(tp: &TraceParent, rng: &mut impl RandomSource) -> TraceParent {
    TraceParent::new(tp.trace_id, new_span_id(rng), tp.flags.defined())
}

/// The B3 context a proxy sends for a child span: same trace id (and width) and sampling (debug
/// kept), a new span id, the incoming span as parent.
pub fn child_b3(ctx: &B3Context, rng: &mut impl RandomSource) -> B3Context {
    let mut child = B3Context::new(ctx.trace_id, new_span_id(rng), ctx.sampling);
    child.parent_span_id = Some(ctx.span_id);
    child
}

/// A fresh trace: random 128-bit trace id (W3C random flag set), new span id.
pub fn new_traceparent(rng: &mut impl RandomSource, sampled: bool) -> TraceParent {
    loop {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        if bytes != [0; 16] {
            let flags = TraceFlags(TraceFlags::RANDOM).with_sampled(sampled);
            return TraceParent::new(TraceId::from_bytes(bytes), new_span_id(rng), flags);
        }
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
