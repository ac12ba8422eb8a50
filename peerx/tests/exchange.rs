//! Two exchange machines wired back to back in memory: both orders of first write, server-first
//! and client-first application protocols, and the peer closing early at every byte offset.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use bytes::Bytes;
use common::*;
use peerx::{Config, Event, Exchange, Metadata, NoPeerReason, Timestamp, Value, encode_frame};

fn frame_for(namespace: &str) -> Bytes {
    let mut m = Metadata::default();
    m.peer.insert("NAMESPACE".into(), Value::from(namespace));
    m.peer.insert("WORKLOAD_NAME".into(), Value::from("w"));
    m.id = Some(format!("sidecar~{namespace}"));
    let mut out = Vec::new();
    encode_frame(&m, &mut out).unwrap();
    Bytes::from(out)
}

/// One side: its machine, what it wrote to the wire, what its application received.
struct Side {
    ex: Exchange,
    wire_out: Vec<u8>,
    app_in: Vec<u8>,
    peer_namespace: Option<String>,
}

impl Side {
    fn new(namespace: &str) -> Self {
        let mut ex = Exchange::new(Config::new(frame_for(namespace)));
        ex.set_alpn(Timestamp(0), Some(b"istio-peer-exchange"));
        Self {
            ex,
            wire_out: Vec::new(),
            app_in: Vec::new(),
            peer_namespace: None,
        }
    }

    /// The application writes: the frame goes first, once.
    fn app_write(&mut self, data: &[u8]) {
        if let Some(frame) = self.ex.poll_transmit() {
            self.wire_out.extend_from_slice(&frame);
        }
        assert!(self.ex.can_send_application_data());
        self.wire_out.extend_from_slice(data);
    }

    /// Bytes arrive from the peer; like the reference, reading also triggers our own frame.
    fn receive(&mut self, now: u64, data: &[u8]) {
        if let Some(frame) = self.ex.poll_transmit() {
            self.wire_out.extend_from_slice(&frame);
        }
        let range = self.ex.feed(Timestamp(now), data).unwrap();
        while let Some(event) = self.ex.poll_event() {
            match event {
                Event::Peer(p) => {
                    self.peer_namespace = p.metadata().workload().map(|w| w.namespace.to_owned());
                }
                Event::Forward(held) => self.app_in.extend_from_slice(&held),
                other => panic!("{other:?}"),
            }
        }
        self.app_in.extend_from_slice(&data[range]);
    }
}

/// Moves what `from` wrote onto the wire into `to`, in chunks of `step`.
fn deliver(from: &mut Side, to: &mut Side, step: usize) {
    let wire = std::mem::take(&mut from.wire_out);
    for (i, chunk) in wire.chunks(step.max(1)).enumerate() {
        to.receive(i as u64, chunk);
    }
}

#[test]
fn both_orders_of_first_write_and_both_protocol_shapes() {
    for step in [1, 3, 7, 64, 4096] {
        // Client-first (HTTP-like): the client writes, the server answers.
        let (mut client, mut server) = (Side::new("client-ns"), Side::new("server-ns"));
        client.app_write(b"GET / HTTP/1.1\r\n\r\n");
        deliver(&mut client, &mut server, step);
        server.app_write(b"HTTP/1.1 200 OK\r\n\r\n");
        deliver(&mut server, &mut client, step);
        assert_eq!(server.app_in, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(client.app_in, b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(server.peer_namespace.as_deref(), Some("client-ns"));
        assert_eq!(client.peer_namespace.as_deref(), Some("server-ns"));

        // Server-first (MySQL-like greeting): the server writes before the client says anything;
        // the client's frame goes out when it first reads.
        let (mut client, mut server) = (Side::new("client-ns"), Side::new("server-ns"));
        server.app_write(b"greeting");
        deliver(&mut server, &mut client, step);
        assert_eq!(client.app_in, b"greeting");
        assert!(
            !client.wire_out.is_empty(),
            "reading triggered the client's frame"
        );
        client.app_write(b"login");
        deliver(&mut client, &mut server, step);
        assert_eq!(server.app_in, b"login");
        assert_eq!(server.peer_namespace.as_deref(), Some("client-ns"));

        // Both write at once, before either reads.
        let (mut a, mut b) = (Side::new("a"), Side::new("b"));
        a.app_write(b"from a");
        b.app_write(b"from b");
        deliver(&mut a, &mut b, step);
        deliver(&mut b, &mut a, step);
        assert_eq!(
            (a.app_in.as_slice(), b.app_in.as_slice()),
            (&b"from b"[..], &b"from a"[..])
        );
        assert_eq!(
            (a.peer_namespace.as_deref(), b.peer_namespace.as_deref()),
            (Some("b"), Some("a"))
        );
        assert_eq!(a.ex.stats().metadata_added, 1);
        assert_eq!(a.ex.stats().peer_frames, 1);
    }
}

#[test]
fn peer_closing_early_at_every_offset() {
    let frame = frame_for("ns");
    let mut stream = frame.to_vec();
    stream.extend_from_slice(b"app");
    for cut in 0..=stream.len() {
        let observed = receive(&[&stream[..cut]], default_config(), true);
        let complete = cut >= frame.len();
        if complete {
            assert!(
                observed.events[0].starts_with("Peer("),
                "cut {cut}: {observed:?}"
            );
            assert_eq!(observed.application, &stream[frame.len()..cut], "cut {cut}");
        } else {
            // Nothing is lost: the partial frame comes back as application bytes.
            assert_eq!(
                observed.events[0],
                format!("{:?}", Event::NoPeer(NoPeerReason::PeerClosed)),
                "cut {cut}"
            );
            assert_eq!(observed.application, &stream[..cut], "cut {cut}");
        }
    }
}

#[test]
fn timeout_in_both_wait_states_and_alpn_mismatch() {
    let frame = frame_for("ns");
    for held in [0usize, 3, 8, 20] {
        let mut ex = Exchange::new(default_config().timeout_ns(Some(1_000)));
        ex.set_alpn(Timestamp(100), Some(b"istio-peer-exchange"));
        assert_eq!(ex.poll_timeout(), Some(Timestamp(1_100)));
        assert_eq!(ex.feed(Timestamp(200), &frame[..held]).unwrap(), held..held);
        ex.handle_timeout(Timestamp(1_099));
        assert_eq!(ex.poll_event(), None, "not yet");
        ex.handle_timeout(Timestamp(1_100));
        assert_eq!(
            ex.poll_event(),
            Some(Event::NoPeer(NoPeerReason::Timeout)),
            "held {held}"
        );
        if held > 0 {
            assert_eq!(ex.poll_event(), Some(Event::Forward(frame.slice(..held))));
        }
        assert_eq!(ex.poll_timeout(), None);
        // From now on every byte passes through untouched.
        assert_eq!(ex.feed(Timestamp(2_000), b"later").unwrap(), 0..5);
        let stats = ex.stats();
        assert_eq!(stats.initial_header_not_found + stats.header_not_found, 1);
    }

    let mut ex = Exchange::new(default_config());
    ex.set_alpn(Timestamp(0), Some(b"h2"));
    assert_eq!(ex.poll_event(), Some(Event::Disabled));
    assert_eq!(ex.poll_transmit(), None);
    assert!(ex.can_send_application_data());
    assert_eq!(
        ex.feed(Timestamp(1), &frame).unwrap(),
        0..frame.len(),
        "a frame is just data now"
    );
    assert_eq!(ex.stats().alpn_protocol_not_found, 1);

    let mut ex = Exchange::new(default_config());
    assert_eq!(
        ex.feed(Timestamp(0), b"x").unwrap_err().kind(),
        peerx::ErrorKind::AlpnNotSet
    );
    ex.set_alpn(Timestamp(0), None);
    assert_eq!(ex.poll_event(), Some(Event::Disabled));
}

#[test]
fn a_frame_arriving_after_a_silent_timeout_is_still_consumed() {
    let frame = frame_for("ns");
    let mut stream = frame.to_vec();
    stream.extend_from_slice(b"app");
    let mut ex = Exchange::new(default_config().timeout_ns(Some(1_000)));
    ex.set_alpn(Timestamp(0), Some(b"istio-peer-exchange"));
    ex.handle_timeout(Timestamp(1_000));
    assert_eq!(ex.poll_event(), Some(Event::NoPeer(NoPeerReason::Timeout)));
    assert_eq!(
        ex.poll_timeout(),
        None,
        "nothing held, nothing to give up on"
    );
    // The slow peer's frame comes after all: consumed, reported late, never application data.
    assert_eq!(ex.feed(Timestamp(5_000), &stream[..5]).unwrap(), 5..5);
    assert_eq!(
        ex.poll_timeout(),
        Some(Timestamp(6_000)),
        "a fresh wait for the rest"
    );
    let app = ex.feed(Timestamp(5_500), &stream[5..]).unwrap();
    assert_eq!(&stream[5..][app], b"app");
    assert!(matches!(ex.poll_event(), Some(Event::Peer(_))));
    assert_eq!(ex.poll_event(), None);
    assert_eq!(ex.stats().initial_header_not_found, 1, "the timeout, once");

    // A late frame that stalls is given up on like any other, per the policy.
    let mut ex = Exchange::new(
        default_config()
            .timeout_ns(Some(1_000))
            .on_malformed(peerx::MalformedPolicy::Close),
    );
    ex.set_alpn(Timestamp(0), Some(b"istio-peer-exchange"));
    ex.handle_timeout(Timestamp(1_000));
    assert_eq!(ex.poll_event(), Some(Event::NoPeer(NoPeerReason::Timeout)));
    assert_eq!(ex.feed(Timestamp(5_000), &frame[..12]).unwrap(), 12..12);
    ex.handle_timeout(Timestamp(6_000));
    assert_eq!(ex.poll_event(), Some(Event::Close(NoPeerReason::Timeout)));

    // A silent peer that closes: reported once, at the timeout.
    let mut ex = Exchange::new(default_config().timeout_ns(Some(1_000)));
    ex.set_alpn(Timestamp(0), Some(b"istio-peer-exchange"));
    ex.handle_timeout(Timestamp(1_000));
    assert_eq!(ex.poll_event(), Some(Event::NoPeer(NoPeerReason::Timeout)));
    ex.feed_eof(Timestamp(2_000));
    assert_eq!(ex.poll_event(), None);
    assert_eq!(ex.stats().initial_header_not_found, 1);
}

#[test]
fn application_bytes_are_never_copied() {
    let frame = frame_for("ns");
    let app = vec![0xAB; 64 * 1024];
    let mut ex = Exchange::new(default_config());
    ex.set_alpn(Timestamp(0), Some(b"istio-peer-exchange"));
    let _ = ex.poll_transmit();
    let mut first = frame.to_vec();
    first.extend_from_slice(&app[..1000]);
    let range = ex.feed(Timestamp(1), &first).unwrap();
    assert_eq!(range, frame.len()..first.len());
    for chunk in app[1000..].chunks(16 * 1024) {
        assert_eq!(ex.feed(Timestamp(2), chunk).unwrap(), 0..chunk.len());
    }
    let stats = ex.stats();
    assert_eq!(
        stats.bytes_held,
        frame.len() as u64,
        "only the frame was copied"
    );
    assert_eq!(stats.bytes_passed, app.len() as u64);
    assert_eq!(stats.bytes_forwarded, 0);
}

#[test]
fn is_done_once_the_frame_is_read_and_feed_after_eof_is_fed_after_eof() {
    let frame = frame_for("ns");
    let mut ex = Exchange::new(Config::new(frame.clone()));
    assert!(!ex.is_done(), "waiting for the ALPN");
    ex.set_alpn(Timestamp(0), Some(peerx::ISTIO_PEER_EXCHANGE_ALPN));
    assert!(!ex.is_done(), "waiting for the peer's frame");
    assert_eq!(ex.feed(Timestamp(1), &frame[..3]).unwrap(), 3..3);
    assert!(!ex.is_done(), "inside the frame");
    let rest = frame.len() - 3;
    assert_eq!(
        ex.feed(Timestamp(2), &frame[3..]).unwrap(),
        rest..rest,
        "all frame"
    );
    assert!(ex.is_done());
    assert!(matches!(ex.poll_event(), Some(Event::Peer(_))));
    assert_eq!(
        ex.feed(Timestamp(3), b"app").unwrap(),
        0..3,
        "plain data now"
    );

    ex.feed_eof(Timestamp(4));
    assert!(ex.is_done());
    let err = ex.feed(Timestamp(5), b"x").unwrap_err();
    assert_eq!(err.kind(), peerx::ErrorKind::FedAfterEof);

    let mut off = Exchange::new(default_config());
    off.set_alpn(Timestamp(0), Some(b"h2"));
    assert!(off.is_done(), "the exchange is off");
    assert_eq!(off.poll_event(), Some(Event::Disabled));
}

#[test]
fn timestamps_come_from_durations() {
    use core::time::Duration;
    assert_eq!(
        Timestamp::from(Duration::from_secs(5)),
        Timestamp(5_000_000_000)
    );
    assert_eq!(
        Timestamp::from(Duration::MAX),
        Timestamp(u64::MAX),
        "saturates"
    );
    assert_eq!(Timestamp(7).as_duration(), Duration::from_nanos(7));
}
