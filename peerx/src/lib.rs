//! `peerx`: Istio's TCP peer-metadata exchange (ALPN `istio-peer-exchange`), sans-IO and zero-copy.
//!
//! After an mTLS handshake that negotiated `istio-peer-exchange`, each side writes one frame before
//! any application byte: an 8-byte header (magic `0x3D230467`, then the payload length, both
//! big-endian `u32`) and a protobuf `google.protobuf.Any` wrapping a `Struct` whose key
//! `x-envoy-peer-metadata` holds the workload's metadata and `x-envoy-peer-metadata-id` its node id.
//!
//! * Tier 1: [`parse_frame`] reads a frame in place (`Partial` with the exact bytes still needed, a
//!   typed error for every way a frame can be wrong) and yields [`PeerMetadata`], a view over the
//!   outer `Struct`; [`Workload`] is the typed view Istio's receiver derives. [`encode_frame`]
//!   writes a frame byte-identical to Envoy's deterministic serialization from the owned
//!   [`Metadata`], and refuses (typed error) a frame the receiver's [`Limits`] would reject
//!   ([`encode_frame_with_limits`] for other limits than the default). [`decode_peer_metadata_header`] and [`encode_base64`] handle the HTTP variant.
//! * Tier 2: [`Exchange`] runs one side of one connection: it hands out our frame once through
//!   [`Exchange::poll_transmit`], consumes exactly one peer frame from the inbound bytes in any
//!   chunking, and returns every following byte to the caller as a range of its own buffer (no
//!   copy). Wrong magic, early close, a timeout, an oversize or undecodable payload each end in a
//!   typed [`Event`].
//!
//! The crate performs no I/O, reads no clock, spawns no threads; parsing never allocates.
//!
//! Encoders share one convention: the verb is `encode_*` ([`encode_frame`],
//! [`encode_frame_with_limits`], [`Metadata::encode_peer_struct`], [`encode_base64`]), the
//! output is appended to any [`bytes::BufMut`] (a `Vec<u8>`, a `BytesMut`, a `&mut [u8]`) and the
//! length written comes back; an output with too little room is
//! [`ErrorKind::BufferTooSmall`] and nothing is written. `bytes` is re-exported ([`bytes`]) since
//! its types are in this API.
//!
//! # Run loop
//! One side of one connection, with the I/O the caller owns shown as comments. The exchange
//! ends one of four ways: the peer's frame ([`Event::Peer`]), no frame ([`Event::NoPeer`]:
//! not an exchange peer, malformed, closed early or timed out), the exchange off
//! ([`Event::Disabled`]), or a close the policy asks for ([`Event::Close`]). From
//! [`Exchange::is_done`] on, the stream is plain application data.
//! ```
//! use core::time::Duration;
//! use peerx::bytes::Bytes;
//! use peerx::{Config, Event, Exchange, Metadata, Timestamp, Value, encode_frame};
//!
//! /// What one wait on the socket gave (a script here; a `read` with a timeout in real life).
//! enum Read { Bytes(&'static [u8]), TimedOut, Closed }
//!
//! /// Hands what the events carry to the application, in order.
//! fn drain(exchange: &mut Exchange, app: &mut Vec<u8>, namespace: &mut Option<String>) {
//!     while let Some(event) = exchange.poll_event() {
//!         match event {
//!             Event::Peer(peer) => {
//!                 *namespace = peer.metadata().workload().map(|w| w.namespace.to_owned());
//!             }
//!             Event::Forward(held) => app.extend_from_slice(&held), // bytes held back, first
//!             Event::NoPeer(_reason) => { /* peer unknown: fall back to discovery */ }
//!             Event::Close(_reason) => { /* close the connection */ }
//!             _ => {}
//!         }
//!     }
//! }
//!
//! let mut me = Metadata::default();
//! me.peer.insert("NAMESPACE".into(), Value::from("default"));
//! let mut frame = Vec::new();
//! encode_frame(&me, &mut frame)?;
//! let frame: &'static [u8] = frame.leak();
//!
//! // The peer sends its frame in two reads, then application bytes.
//! let mut socket = [Read::Bytes(&frame[..5]), Read::Bytes(&frame[5..]), Read::Bytes(b"hello")]
//!     .into_iter();
//! let mut exchange = Exchange::new(Config::new(Bytes::from_static(frame)));
//! let (mut app, mut namespace) = (Vec::new(), None);
//! let mut now = Timestamp::from(Duration::ZERO); // time since the connection started
//! exchange.set_alpn(now, Some(b"istio-peer-exchange")); // what the TLS handshake negotiated
//! while !exchange.is_done() {
//!     if let Some(ours) = exchange.poll_transmit() {
//!         // socket.write_all(&ours), before any application byte
//!         assert_eq!(ours, frame);
//!     }
//!     // Wait for the socket, but no later than the machine's deadline.
//!     let _deadline = exchange.poll_timeout();
//!     now = Timestamp::from(now.as_duration() + Duration::from_millis(1));
//!     match socket.next().unwrap_or(Read::Closed) {
//!         Read::Bytes(bytes) => {
//!             let range = exchange.feed(now, bytes)?;
//!             drain(&mut exchange, &mut app, &mut namespace); // `Forward` comes before the range
//!             app.extend_from_slice(&bytes[range]);
//!         }
//!         Read::TimedOut => exchange.handle_timeout(now),
//!         Read::Closed => exchange.feed_eof(now),
//!     }
//!     drain(&mut exchange, &mut app, &mut namespace);
//! }
//! drain(&mut exchange, &mut app, &mut namespace);
//! // Done: the rest of the stream is application data; the exchange is no longer needed.
//! for read in socket {
//!     if let Read::Bytes(bytes) = read {
//!         app.extend_from_slice(bytes);
//!     }
//! }
//! assert_eq!(namespace.as_deref(), Some("default"));
//! assert_eq!(app, b"hello");
//! # Ok::<(), peerx::Error>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub use bytes;

mod error;
mod exchange;
mod metadata;
mod wire;

pub use error::{Error, ErrorKind};
pub use exchange::{
    Config, Event, Exchange, ISTIO_PEER_EXCHANGE_ALPN, MalformedPolicy, NoPeerReason, PeerFrame,
    Stats, Timestamp,
};
pub use metadata::{
    Metadata, PEER_METADATA_ID_KEY, PEER_METADATA_KEY, PeerMetadata, Value, Workload, WorkloadType,
    encode_frame, encode_frame_with_limits, struct_from_view,
};
pub use wire::base64::{
    HEADER_PEER_METADATA, HEADER_PEER_METADATA_ID, decode_base64, decode_peer_metadata_header,
    decoded_len_max, encode_base64,
};
pub use wire::frame::{
    Frame, FrameHeader, HEADER_LEN, MAGIC, STRUCT_TYPE_SUFFIX, STRUCT_TYPE_URL, parse_frame,
    parse_frame_header,
};
pub use wire::structure::{ListIter, ListView, StructIter, StructView, ValueView};

use core::num::NonZeroUsize;

/// Outcome of a tier-1 parse over a byte slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Status<T> {
    /// A whole value was parsed from the first `consumed` bytes.
    Complete {
        /// The parsed value, borrowing from the input.
        value: T,
        /// Bytes of input it took.
        consumed: usize,
    },
    /// The input is a strict prefix of a valid value; `needed` more bytes, when known, complete it.
    Partial {
        /// How many more bytes are needed, when the framing tells.
        needed: Option<NonZeroUsize>,
    },
}

/// Bounds on what a peer may make us buffer or walk. The encoders refuse what they would reject
/// ([`encode_frame_with_limits`]), so what we send, our peers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest payload a header may declare (default 64 KiB; real frames are 0.6–4 KiB). The
    /// reference has no limit.
    pub max_payload: u32,
    /// Deepest nesting of structs and lists (default 32).
    pub max_depth: u16,
}

impl Limits {
    /// Sets [`Limits::max_payload`].
    pub const fn max_payload(mut self, bytes: u32) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Sets [`Limits::max_depth`].
    pub const fn max_depth(mut self, depth: u16) -> Self {
        self.max_depth = depth;
        self
    }

    /// Any payload size. Depth stays bounded (512) because validation recurses.
    pub const fn unbounded_dangerous() -> Self {
        Self {
            max_payload: u32::MAX,
            max_depth: 512,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload: 64 * 1024,
            max_depth: 32,
        }
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
