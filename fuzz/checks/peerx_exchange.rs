// Properties of the `Exchange` machine on an arbitrary inbound stream, split at points drawn from
// the input, with the stream ending in EOF or a timeout:
// - never panics; identical events and application bytes whole and split;
// - nothing is lost, duplicated or reordered: the application stream is a suffix of the input, and
//   it is the whole input whenever no frame was consumed;
// - what the machine holds never exceeds header + payload limit.

fn run(chunks: &[&[u8]], limits: peerx::Limits, end_by_timeout: bool) -> (Vec<String>, Vec<u8>, bool) {
    use peerx::{Config, Event, Exchange, Timestamp};
    let mut ex = Exchange::new(Config::new(bytes::Bytes::from_static(b"f")).limits(limits).timeout_ns(Some(1000)));
    ex.set_alpn(Timestamp(0), Some(b"istio-peer-exchange"));
    let mut events = Vec::new();
    let mut app = Vec::new();
    let mut peer = false;
    let drain = |ex: &mut Exchange, events: &mut Vec<String>, app: &mut Vec<u8>, peer: &mut bool| {
        while let Some(event) = ex.poll_event() {
            match event {
                Event::Forward(b) => app.extend_from_slice(&b),
                Event::Peer(p) => {
                    *peer = true;
                    events.push(format!("{:?}", p.metadata()));
                }
                other => events.push(format!("{other:?}")),
            }
        }
    };
    for chunk in chunks {
        let range = ex.feed(Timestamp(1), chunk).expect("no close policy, no EOF yet");
        drain(&mut ex, &mut events, &mut app, &mut peer);
        app.extend_from_slice(&chunk[range]);
        assert!(ex.stats().bytes_held <= 8 + u64::from(limits.max_payload));
    }
    if end_by_timeout {
        ex.handle_timeout(Timestamp(2000));
    } else {
        ex.feed_eof(Timestamp(2000));
    }
    drain(&mut ex, &mut events, &mut app, &mut peer);
    (events, app, peer)
}

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    let Some((&control, stream)) = data.split_first() else { return };
    let limits = peerx::Limits::default().max_payload(1024);
    let end_by_timeout = control & 0x80 != 0;
    let whole = run(&[stream], limits, end_by_timeout);
    let step = usize::from(control & 0x3F) + 1;
    let split: Vec<&[u8]> = stream.chunks(step).collect();
    assert_eq!(whole, run(&split, limits, end_by_timeout), "chunks of {step}");
    let (_, app, peer) = &whole;
    assert!(stream.ends_with(app), "application bytes are a suffix of the input");
    if !peer {
        assert_eq!(app.as_slice(), stream, "without a frame consumed, every byte goes on");
    }
}
