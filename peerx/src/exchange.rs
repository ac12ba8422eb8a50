//! Tier 2: the sans-IO exchange for one side of one connection.

use alloc::collections::VecDeque;
use core::ops::Range;
use core::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::error::{Error, ErrorKind};
use crate::metadata::PeerMetadata;
use crate::wire::frame::{HEADER_LEN, locate_payload, parse_frame_header};
use crate::wire::structure::StructView;
use crate::{Limits, Status};

/// The ALPN Istio negotiates for the exchange.
pub const ISTIO_PEER_EXCHANGE_ALPN: &[u8] = b"istio-peer-exchange";

/// Nanoseconds on a clock the caller chooses; the machine never reads a clock.
///
/// Build one from the time elapsed since any fixed instant of the caller's (the connection's
/// start, a monotonic clock's origin):
///
/// ```
/// use core::time::Duration;
/// use peerx::Timestamp;
///
/// assert_eq!(Timestamp::from(Duration::from_millis(1500)), Timestamp(1_500_000_000));
/// assert_eq!(Timestamp(1_500_000_000).as_duration(), Duration::from_millis(1500));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The instant `elapsed` after the clock's origin; saturates at `u64::MAX` nanoseconds
    /// (about 584 years).
    pub fn from_duration(elapsed: Duration) -> Self {
        Self(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }

    /// The time since the clock's origin.
    pub const fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }
}

impl From<Duration> for Timestamp {
    fn from(elapsed: Duration) -> Self {
        Self::from_duration(elapsed)
    }
}

/// What to do with a peer frame that announces itself (its first bytes match the magic) but cannot
/// be used: a payload over the limit, empty, or not an `Any(Struct)`, or a frame cut short by the
/// peer closing or by the timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MalformedPolicy {
    /// Hand the frame's bytes and everything after to the application, as the reference filter
    /// does (its payload "leaks" to the application).
    #[default]
    PassThrough,
    /// Report [`Event::Close`]: the caller should close the connection. The frame's bytes are
    /// consumed and later input is refused.
    Close,
}

/// How one side runs the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The ALPN that enables the exchange, compared exactly (default `istio-peer-exchange`).
    pub protocol: Bytes,
    /// Our frame, written once before any application byte (see [`encode_frame`](crate::encode_frame)).
    pub local_frame: Bytes,
    /// How long to wait for the peer's frame after the ALPN is known, in nanoseconds (default 5 s;
    /// `None` waits for ever, as the reference does).
    pub timeout_ns: Option<u64>,
    /// What to do with a malformed peer frame.
    pub on_malformed: MalformedPolicy,
    /// Bounds on the peer's frame.
    pub limits: Limits,
}

impl Config {
    /// Defaults around our encoded frame.
    pub fn new(local_frame: Bytes) -> Self {
        Self {
            protocol: Bytes::from_static(ISTIO_PEER_EXCHANGE_ALPN),
            local_frame,
            timeout_ns: Some(5_000_000_000),
            on_malformed: MalformedPolicy::PassThrough,
            limits: Limits::default(),
        }
    }

    /// Sets [`Config::protocol`].
    pub fn protocol(mut self, alpn: Bytes) -> Self {
        self.protocol = alpn;
        self
    }

    /// Sets [`Config::timeout_ns`].
    pub fn timeout_ns(mut self, timeout: Option<u64>) -> Self {
        self.timeout_ns = timeout;
        self
    }

    /// Sets [`Config::on_malformed`].
    pub fn on_malformed(mut self, policy: MalformedPolicy) -> Self {
        self.on_malformed = policy;
        self
    }

    /// Sets [`Config::limits`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// Why the exchange ended without peer metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoPeerReason {
    /// The peer's first bytes are not a frame: it does not run the exchange. Its bytes are
    /// application data (recognised from the first byte that differs from the magic, without
    /// waiting for a whole header).
    NotExchange,
    /// The frame could not be used (too large, empty, not an `Any(Struct)`).
    Malformed(ErrorKind),
    /// The peer closed before its frame was complete.
    PeerClosed,
    /// The timeout passed before the peer's frame was complete.
    Timeout,
}

/// A peer frame that was read, owning its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerFrame {
    frame: Bytes,
    type_url: Range<usize>,
    outer: Range<usize>,
}

impl PeerFrame {
    /// The whole frame, header included.
    pub fn bytes(&self) -> &Bytes {
        &self.frame
    }

    /// The `Any`'s type URL.
    pub fn type_url(&self) -> &str {
        let payload = self.frame.get(HEADER_LEN..).unwrap_or_default();
        payload
            .get(self.type_url.clone())
            .and_then(|u| core::str::from_utf8(u).ok())
            .unwrap_or_default()
    }

    /// The metadata, borrowed from this frame.
    pub fn metadata(&self) -> PeerMetadata<'_> {
        let payload = self.frame.get(HEADER_LEN..).unwrap_or_default();
        let outer = payload.get(self.outer.clone()).unwrap_or_default();
        PeerMetadata::new(StructView::validated(
            outer,
            (HEADER_LEN + self.outer.start) as u64,
        ))
    }
}

impl core::fmt::Debug for PeerFrame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PeerFrame")
            .field("len", &self.frame.len())
            .field("metadata", &self.metadata())
            .finish()
    }
}

/// What the machine reports; drain [`Exchange::poll_event`] after every input.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The negotiated ALPN is not the exchange's: nothing is sent, everything passes through.
    Disabled,
    /// The peer's frame was read. Its metadata may still name no peer
    /// ([`PeerMetadata::peer`] is `None`), which completes the exchange with an unknown peer.
    Peer(PeerFrame),
    /// The exchange ended without metadata; inbound bytes pass through from now on. One
    /// exception keeps a slow peer's frame away from the application: after
    /// `NoPeer(Timeout)` with not one byte received, a frame that still comes first is consumed
    /// and reported by a late [`Event::Peer`]; any other first byte starts the application data.
    NoPeer(NoPeerReason),
    /// Bytes the machine had held back, to hand to the application now, before the range
    /// returned by the [`Exchange::feed`] that produced this event.
    Forward(Bytes),
    /// The policy asks to close the connection; later input is refused.
    Close(NoPeerReason),
}

/// Counters, named as the reference filter's where they mean the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// The ALPN matched.
    pub alpn_protocol_found: u64,
    /// The ALPN did not match.
    pub alpn_protocol_not_found: u64,
    /// No frame header where one was expected (wrong magic, or the peer closed or timed out
    /// before 8 bytes). Counted once per connection; the reference counts every short read.
    pub initial_header_not_found: u64,
    /// A header was found but its payload was unusable (or never completed).
    pub header_not_found: u64,
    /// Our frame was handed out to be written.
    pub metadata_added: u64,
    /// Peer frames read.
    pub peer_frames: u64,
    /// Application bytes returned as ranges of the caller's own chunks (never copied).
    pub bytes_passed: u64,
    /// Bytes copied into the machine: the peer's frame, at most header plus payload limit.
    pub bytes_held: u64,
    /// Held bytes handed back through [`Event::Forward`].
    pub bytes_forwarded: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitAlpn,
    Disabled,
    Header,
    Payload { size: u32 },
    Passing,
    Closed,
}

/// The peer-metadata exchange for one side of one connection (client or server: it is
/// symmetric). Sans-IO: the caller does the TLS and the socket.
///
/// ```
/// use bytes::Bytes;
/// use peerx::{Config, Event, Exchange, Metadata, Timestamp, encode_frame};
///
/// let mut frame = Vec::new();
/// encode_frame(&Metadata::default(), &mut frame).unwrap();
/// let mut ours = Exchange::new(Config::new(Bytes::from(frame.clone())));
/// let mut theirs = Exchange::new(Config::new(Bytes::from(frame)));
/// for side in [&mut ours, &mut theirs] {
///     side.set_alpn(Timestamp(0), Some(b"istio-peer-exchange"));
/// }
/// // Each side writes its frame first, then application bytes.
/// let mut wire = ours.poll_transmit().unwrap().to_vec();
/// assert!(ours.can_send_application_data());
/// wire.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
/// // The other side consumes exactly the frame and hands back the rest as a range.
/// let app = theirs.feed(Timestamp(1), &wire).unwrap();
/// assert_eq!(&wire[app], b"GET / HTTP/1.1\r\n\r\n");
/// assert!(matches!(theirs.poll_event(), Some(Event::Peer(_))));
/// assert_eq!(theirs.poll_event(), None);
/// ```
#[derive(Debug)]
pub struct Exchange {
    config: Config,
    state: State,
    frame_sent: bool,
    held: BytesMut,
    events: VecDeque<Event>,
    deadline: Option<Timestamp>,
    /// `NoPeer(Timeout)` was reported before the peer sent anything; a frame may still come.
    silent_timeout: bool,
    /// [`Exchange::feed_eof`] was called: later input is misuse.
    eof: bool,
    stats: Stats,
}

impl Exchange {
    /// A machine awaiting the negotiated ALPN.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            state: State::AwaitAlpn,
            frame_sent: false,
            held: BytesMut::new(),
            events: VecDeque::new(),
            deadline: None,
            silent_timeout: false,
            eof: false,
            stats: Stats::default(),
        }
    }

    /// Tells the machine the ALPN the TLS handshake negotiated (`None` for none). Only the first
    /// call counts.
    pub fn set_alpn(&mut self, now: Timestamp, negotiated: Option<&[u8]>) {
        if self.state != State::AwaitAlpn {
            return;
        }
        if negotiated == Some(&self.config.protocol[..]) {
            self.stats.alpn_protocol_found += 1;
            self.state = State::Header;
            self.deadline = self
                .config
                .timeout_ns
                .map(|t| Timestamp(now.0.saturating_add(t)));
        } else {
            self.stats.alpn_protocol_not_found += 1;
            self.state = State::Disabled;
            self.events.push_back(Event::Disabled);
        }
    }

    /// Our frame, once, when the exchange is on. Write it before any application byte.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.frame_sent || matches!(self.state, State::AwaitAlpn | State::Disabled) {
            return None;
        }
        self.frame_sent = true;
        self.stats.metadata_added += 1;
        Some(self.config.local_frame.clone())
    }

    /// Whether application bytes may be written now: our frame has been handed out, or the
    /// exchange is off.
    pub fn can_send_application_data(&self) -> bool {
        self.frame_sent || self.state == State::Disabled
    }

    /// Takes bytes the peer sent and returns the range of `bytes` that is application data, to
    /// forward after any [`Event::Forward`] this call produces. Bytes outside the range belong to
    /// the peer's frame and are consumed.
    ///
    /// # Errors
    /// Caller misuse only (malformed peer input is an [`Event`]): [`ErrorKind::FedAfterEof`]
    /// after [`Exchange::feed_eof`], [`ErrorKind::AlpnNotSet`] before [`Exchange::set_alpn`],
    /// [`ErrorKind::Closed`] after an [`Event::Close`]. Nothing is consumed then.
    ///
    /// # Panics
    /// Never.
    pub fn feed(&mut self, now: Timestamp, bytes: &[u8]) -> Result<Range<usize>, Error> {
        if self.eof {
            return Err(Error::new(ErrorKind::FedAfterEof, 0));
        }
        let mut at = 0;
        loop {
            let rest = bytes.get(at..).unwrap_or_default();
            match self.state {
                State::AwaitAlpn => return Err(Error::new(ErrorKind::AlpnNotSet, 0)),
                State::Closed => return Err(Error::new(ErrorKind::Closed, 0)),
                State::Disabled | State::Passing => {
                    self.stats.bytes_passed += rest.len() as u64;
                    return Ok(at..bytes.len());
                }
                State::Header => {
                    let take = rest.len().min(HEADER_LEN - self.held.len());
                    let mut header = [0u8; HEADER_LEN];
                    let held = self.held.len();
                    header
                        .get_mut(..held)
                        .unwrap_or_default()
                        .copy_from_slice(&self.held);
                    let seen = held + take;
                    header
                        .get_mut(held..seen)
                        .unwrap_or_default()
                        .copy_from_slice(rest.get(..take).unwrap_or_default());
                    match parse_frame_header(
                        header.get(..seen).unwrap_or_default(),
                        &self.config.limits,
                    ) {
                        Ok(Status::Partial { .. }) => {
                            self.hold(rest.get(..take).unwrap_or_default());
                            self.rearm_after_silence(now);
                            return Ok(bytes.len()..bytes.len());
                        }
                        Ok(Status::Complete { value, .. }) => {
                            self.hold(rest.get(..take).unwrap_or_default());
                            self.rearm_after_silence(now);
                            at += take;
                            self.state = State::Payload {
                                size: value.data_size,
                            };
                        }
                        Err(e) => {
                            if let ErrorKind::BadMagic { .. } = e.kind() {
                                if self.silent_timeout {
                                    // Already reported; the application data simply begins.
                                    self.state = State::Passing;
                                    self.deadline = None;
                                    continue;
                                }
                                self.stats.initial_header_not_found += 1;
                                self.end_without_peer(NoPeerReason::NotExchange, true);
                                // This chunk is application data from its first byte.
                                continue;
                            }
                            // Right magic, unusable length: the header bytes are the frame's.
                            self.hold(rest.get(..take).unwrap_or_default());
                            at += take;
                            self.stats.header_not_found += 1;
                            self.end_without_peer(NoPeerReason::Malformed(e.kind()), false);
                            if self.state == State::Closed {
                                return Ok(bytes.len()..bytes.len());
                            }
                        }
                    }
                }
                State::Payload { size } => {
                    let frame_len = HEADER_LEN + size as usize;
                    let take = rest.len().min(frame_len - self.held.len());
                    self.hold(rest.get(..take).unwrap_or_default());
                    at += take;
                    if self.held.len() < frame_len {
                        return Ok(bytes.len()..bytes.len());
                    }
                    let payload = self.held.get(HEADER_LEN..).unwrap_or_default();
                    match locate_payload(payload, HEADER_LEN as u64, &self.config.limits) {
                        Ok((type_url, outer)) => {
                            let frame = self.held.split().freeze();
                            self.stats.peer_frames += 1;
                            self.events.push_back(Event::Peer(PeerFrame {
                                frame,
                                type_url,
                                outer,
                            }));
                            self.state = State::Passing;
                            self.deadline = None;
                        }
                        Err(e) => {
                            self.stats.header_not_found += 1;
                            self.end_without_peer(NoPeerReason::Malformed(e.kind()), false);
                            if self.state == State::Closed {
                                return Ok(bytes.len()..bytes.len());
                            }
                        }
                    }
                }
            }
        }
    }

    /// A late frame's first bytes get a fresh timeout, so a peer that stalls inside it is still
    /// given up on.
    fn rearm_after_silence(&mut self, now: Timestamp) {
        if self.silent_timeout && self.deadline.is_none() {
            self.deadline = self
                .config
                .timeout_ns
                .map(|t| Timestamp(now.0.saturating_add(t)));
        }
    }

    /// Copies frame bytes in; bounded by the header plus [`Limits::max_payload`].
    fn hold(&mut self, bytes: &[u8]) {
        self.held.extend_from_slice(bytes);
        self.stats.bytes_held += bytes.len() as u64;
    }

    /// Ends the wait for the peer's frame: reports why, then either hands the held bytes back
    /// and passes everything through, or asks to close.
    fn end_without_peer(&mut self, reason: NoPeerReason, always_pass: bool) {
        self.deadline = None;
        if always_pass || self.config.on_malformed == MalformedPolicy::PassThrough {
            self.events.push_back(Event::NoPeer(reason));
            if !self.held.is_empty() {
                let held = self.held.split().freeze();
                self.stats.bytes_forwarded += held.len() as u64;
                self.events.push_back(Event::Forward(held));
            }
            self.state = State::Passing;
        } else {
            self.held.clear();
            self.events.push_back(Event::Close(reason));
            self.state = State::Closed;
        }
    }

    /// The peer closed its direction. A frame still incomplete ends the exchange without a peer;
    /// its held bytes are handed back (or dropped with [`Event::Close`] under
    /// [`MalformedPolicy::Close`]). Later [`Exchange::feed`] calls are refused with
    /// [`ErrorKind::FedAfterEof`].
    pub fn feed_eof(&mut self, _now: Timestamp) {
        self.eof = true;
        self.give_up(NoPeerReason::PeerClosed);
        if self.state != State::AwaitAlpn {
            self.state = State::Closed;
        }
    }

    /// Call when [`Exchange::poll_timeout`]'s instant has passed: a frame still incomplete then
    /// ends the exchange without a peer.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.deadline.is_some_and(|d| now >= d) {
            self.give_up(NoPeerReason::Timeout);
        }
    }

    fn give_up(&mut self, reason: NoPeerReason) {
        match self.state {
            State::Header => {
                // Silence is no frame at all; bytes that matched the magic so far were one.
                let frame_started = !self.held.is_empty();
                // Once per connection: a silent timeout has counted it already.
                if !self.silent_timeout {
                    self.stats.initial_header_not_found += 1;
                }
                if frame_started {
                    self.end_without_peer(reason, false);
                } else if self.silent_timeout {
                    // Reported at the timeout; the peer has now closed without a frame.
                    self.state = State::Passing;
                } else if reason == NoPeerReason::Timeout {
                    // Report it, but keep watching the first bytes: a slow peer's frame must not
                    // reach the application.
                    self.deadline = None;
                    self.silent_timeout = true;
                    self.events.push_back(Event::NoPeer(reason));
                } else {
                    self.end_without_peer(reason, true);
                }
            }
            State::Payload { .. } => {
                self.stats.header_not_found += 1;
                self.end_without_peer(reason, false);
            }
            _ => {}
        }
    }

    /// Whether the exchange is over: the peer's frame was read or given up on, the exchange is
    /// off ([`Event::Disabled`]), or it was closed ([`Event::Close`], [`Exchange::feed_eof`]).
    /// From then on [`Exchange::feed`] returns every byte as application data (or refuses it
    /// after a close), so once [`Exchange::poll_event`] is drained the caller may stop feeding
    /// the machine and copy the stream directly. Not yet after a `NoPeer(Timeout)` before any
    /// peer byte: a late frame would still be consumed.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Disabled | State::Passing | State::Closed)
    }

    /// The next event; drain until `None` after every input.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Exchange::handle_timeout`] should be called, while waiting for the peer's frame.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.deadline
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }
}
