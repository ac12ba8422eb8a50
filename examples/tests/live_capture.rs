//! `examples::capture::live` on real interfaces. Each capture test runs in its own user and network
//! namespace (`common::netns`), so `lo` carries only the test's own traffic and counts are
//! exact: a port-filtered capture sees every TCP segment of the filtered connections exactly
//! once (IPv4 and IPv6) and nothing else; the interface going down, being removed or being
//! re-created is reported without hanging; a missing interface and a missing capability give
//! errors a user can act on.
//!
//! Where namespaces or packet sockets are not permitted, the tests fail with the reason, or
//! print it and pass with `MESHSNIFF_SKIP_LIVE=1`. `lo_load` (ignored; run it with
//! `--ignored --nocapture`) measures a few seconds of loopback load through the ring.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::netns::{self, in_netns};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use examples::capture::live::{
    INDEX_CHECK_INTERVAL, LiveCapture, LiveConfig, LiveError, RingConfig,
};
use examples::capture::{LinkType, Packet};

/// Opens a capture, or reports the environment unusable when packet sockets are refused.
fn open(config: &LiveConfig) -> Option<LiveCapture> {
    match LiveCapture::open(config) {
        Ok(capture) => Some(capture),
        Err(err @ LiveError::Permission { .. }) => {
            netns::unavailable(&err.to_string());
            None
        }
        Err(err) => panic!("opening {}: {err}", config.interface),
    }
}

fn lo_config(ports: &[u16]) -> LiveConfig {
    LiveConfig {
        ports: ports.to_vec(),
        ..LiveConfig::new("lo")
    }
}

/// Reads blocks until `quiet` consecutive waits of 100 ms bring nothing.
fn drain(capture: &mut LiveCapture, quiet: u32) -> Vec<Packet> {
    let mut packets = Vec::new();
    let mut idle = 0;
    while idle < quiet {
        let n = capture
            .next_block(Duration::from_millis(100), |p| packets.push(p.to_owned()))
            .unwrap();
        idle = if n == 0 { idle + 1 } else { 0 };
    }
    packets
}

/// The TCP fields the checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Seg {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    syn: bool,
    fin: bool,
    ack: bool,
    payload: usize,
}

fn segment(packet: &Packet) -> Seg {
    assert_eq!(packet.link, LinkType::Ethernet);
    let sliced = SlicedPacket::from_ethernet(&packet.data).unwrap();
    let (src, dst): (IpAddr, IpAddr) = match sliced.net {
        Some(NetSlice::Ipv4(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        other => panic!("not IP: {other:?}"),
    };
    let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
        panic!("not TCP: {:?}", sliced.transport);
    };
    Seg {
        src: SocketAddr::new(src, tcp.source_port()),
        dst: SocketAddr::new(dst, tcp.destination_port()),
        seq: tcp.sequence_number(),
        syn: tcp.syn(),
        fin: tcp.fin(),
        ack: tcp.ack(),
        payload: tcp.payload().len(),
    }
}

/// Serves `connections` connections one after another, echoing each until the client closes.
fn echo_server(listener: TcpListener, connections: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for _ in 0..connections {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                stream.write_all(&buf[..n]).unwrap();
            }
        }
    })
}

/// One connection to `addr` exchanging `messages` messages (distinct lengths), closed cleanly;
/// returns the bytes sent (and so echoed).
fn exchange(addr: SocketAddr, messages: usize) -> usize {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut total = 0;
    for i in 0..messages {
        let message = vec![b'a' + (i % 26) as u8; 10 + 37 * i];
        stream.write_all(&message).unwrap();
        let mut back = vec![0; message.len()];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(back, message);
        total += message.len();
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    total
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

const CONNECTIONS: usize = 3;
const MESSAGES: usize = 7;

#[test]
fn lo_sees_each_filtered_segment_once() {
    in_netns("lo_sees_each_filtered_segment_once", || {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = TcpListener::bind("[::1]:0").unwrap();
        let servers: Vec<SocketAddr> = [&v4, &v6].iter().map(|l| l.local_addr().unwrap()).collect();
        let other_addr = other.local_addr().unwrap();
        let ports: Vec<u16> = servers.iter().map(SocketAddr::port).collect();
        let Some(mut capture) = open(&lo_config(&ports)) else {
            return;
        };
        assert_eq!(capture.interface(), "lo");
        assert_eq!(capture.link(), LinkType::Ethernet);
        println!("filter: {}", capture.filter_description());
        let started = now_ns();

        let handles = [
            echo_server(v4, CONNECTIONS),
            echo_server(v6, CONNECTIONS),
            echo_server(other, CONNECTIONS),
        ];
        let mut sent = BTreeMap::new();
        for _ in 0..CONNECTIONS {
            for addr in servers.iter().chain([&other_addr]) {
                *sent.entry(*addr).or_insert(0) += exchange(*addr, MESSAGES);
            }
        }
        for handle in handles {
            handle.join().unwrap();
        }
        let packets = drain(&mut capture, 5);
        let finished = now_ns();

        let segments: Vec<Seg> = packets.iter().map(segment).collect();
        assert!(!segments.is_empty());
        // Only the filtered ports.
        for seg in &segments {
            assert!(
                ports.contains(&seg.src.port()) || ports.contains(&seg.dst.port()),
                "{seg:?} is not on a filtered port {ports:?}"
            );
        }
        for server in &servers {
            let to: Vec<&Seg> = segments.iter().filter(|s| s.dst == *server).collect();
            let from: Vec<&Seg> = segments.iter().filter(|s| s.src == *server).collect();
            // One SYN and one SYN-ACK per connection, one FIN each way.
            assert_eq!(to.iter().filter(|s| s.syn && !s.ack).count(), CONNECTIONS);
            assert_eq!(from.iter().filter(|s| s.syn && s.ack).count(), CONNECTIONS);
            assert_eq!(to.iter().filter(|s| s.fin).count(), CONNECTIONS);
            assert_eq!(from.iter().filter(|s| s.fin).count(), CONNECTIONS);
            // Each byte once, each way: a second copy of any segment would add to these.
            let bytes = |segs: &[&Seg]| segs.iter().map(|s| s.payload).sum::<usize>();
            assert_eq!(bytes(&to), sent[server], "bytes to {server}");
            assert_eq!(bytes(&from), sent[server], "bytes from {server}");
        }
        // No segment carrying data, SYN or FIN twice.
        let mut seen = BTreeMap::new();
        for seg in segments.iter().filter(|s| s.payload > 0 || s.syn || s.fin) {
            let key = (seg.src, seg.dst, seg.seq, seg.payload, seg.syn, seg.fin);
            *seen.entry(key).or_insert(0) += 1;
        }
        assert!(seen.values().all(|&n| n == 1), "duplicates: {seen:?}");
        // Timestamps are the wall clock.
        for packet in &packets {
            assert!(packet.ts_ns + 2_000_000_000 >= started, "{}", packet.ts_ns);
            assert!(packet.ts_ns <= finished + 2_000_000_000, "{}", packet.ts_ns);
        }

        let stats = capture.stats();
        let kernel = capture.kernel_stats().unwrap();
        println!("{stats:?}\n{kernel:?}");
        assert_eq!(stats.outgoing_on_lo, 0);
        assert_eq!(stats.malformed_blocks, 0);
        assert_eq!(stats.down_events, 0);
        assert_eq!(stats.truncated, 0);
        assert_eq!(stats.packets, packets.len() as u64);
        assert_eq!(
            stats.bytes,
            packets.iter().map(|p| p.data.len() as u64).sum::<u64>()
        );
        assert!(stats.blocks >= 1);
        assert_eq!(kernel.drops, 0);
        assert_eq!(kernel.freezes, 0);
        // The kernel kept (after the filter) exactly what was handed out: one copy each.
        assert_eq!(kernel.packets, stats.packets);
        // Running totals: a second read adds nothing new.
        assert_eq!(capture.kernel_stats().unwrap(), kernel);
        assert!(capture.is_up());
    });
}

#[test]
fn a_missing_interface_is_named() {
    for name in ["nosuch0", "", "a-name-far-too-long-for-linux", "nul\0name"] {
        let err = LiveCapture::open(&LiveConfig::new(name)).unwrap_err();
        assert!(
            matches!(&err, LiveError::NoSuchInterface { interface } if interface == name),
            "{name:?}: {err:?}"
        );
    }
    let err = LiveCapture::open(&LiveConfig::new("nosuch0")).unwrap_err();
    assert_eq!(err.to_string(), "no network interface named \"nosuch0\"");
}

#[test]
fn without_cap_net_raw_the_error_names_it() {
    const NAME: &str = "without_cap_net_raw_the_error_names_it";
    let expected = "capturing on lo needs the CAP_NET_RAW capability \
                    (run as root, or: setcap cap_net_raw+ep <binary>)";
    match LiveCapture::open(&LiveConfig::new("lo")) {
        Err(err @ LiveError::Permission { .. }) => assert_eq!(err.to_string(), expected),
        Err(err) => panic!("expected a permission error, got {err:?}"),
        Ok(_) if netns::is_inner(NAME) => panic!("opened lo without CAP_NET_RAW"),
        // This process has the capability: run the test again without it.
        Ok(_) => netns::rerun(
            NAME,
            "setpriv",
            &["--inh-caps=-net_raw", "--bounding-set=-net_raw", "--"],
        ),
    }
}

#[test]
fn lo_down_is_reported_without_hanging() {
    in_netns("lo_down_is_reported_without_hanging", || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A small ring this time.
        let ring = RingConfig {
            block_size: 64 << 10,
            block_count: 4,
            retire_ms: 5,
        };
        let config = LiveConfig {
            ring,
            ..lo_config(&[addr.port()])
        };
        let Some(mut capture) = open(&config) else {
            return;
        };
        assert_eq!(capture.ring(), ring);
        let server = echo_server(listener, 2);
        exchange(addr, 2);
        let before = drain(&mut capture, 2).len();
        assert!(before > 0);
        assert!(capture.is_up());

        netns::run("ip", &["link", "set", "lo", "down"]).unwrap();
        let timeout = Duration::from_millis(200);
        for _ in 0..5 {
            let start = Instant::now();
            let n = capture.next_block(timeout, |_| {}).unwrap();
            assert_eq!(n, 0);
            assert!(start.elapsed() < timeout + Duration::from_millis(500));
            assert!(!capture.is_up());
        }
        assert_eq!(capture.stats().down_events, 1);

        netns::run("ip", &["link", "set", "lo", "up"]).unwrap();
        capture.next_block(timeout, |_| {}).unwrap();
        assert!(capture.is_up(), "up again once the interface is");
        // The kernel hooked the same socket again: capture resumes.
        exchange(addr, 2);
        server.join().unwrap();
        let after = drain(&mut capture, 2).len();
        assert!(after > 0, "nothing captured after lo came back");
        assert_eq!(capture.stats().down_events, 1);
        assert_eq!(capture.kernel_stats().unwrap().drops, 0);
    });
}

/// Creates the veth pair `mv0`/`mv1`, or reports the environment unusable.
fn veth() -> bool {
    match netns::run(
        "ip",
        &["link", "add", "mv0", "type", "veth", "peer", "name", "mv1"],
    ) {
        Ok(()) => true,
        Err(why) => {
            netns::unavailable(&why);
            false
        }
    }
}

/// Calls `next_block` until it fails, for at most a few seconds.
fn next_error(capture: &mut LiveCapture) -> LiveError {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        if let Err(err) = capture.next_block(Duration::from_millis(100), |_| {}) {
            return err;
        }
    }
    panic!("no error within 8 s");
}

#[test]
fn a_removed_interface_ends_the_capture() {
    in_netns("a_removed_interface_ends_the_capture", || {
        if !veth() {
            return;
        }
        let Some(mut capture) = open(&LiveConfig::new("mv0")) else {
            return;
        };
        assert_eq!(capture.link(), LinkType::Ethernet);
        assert!(
            !capture.filter_description().contains("outgoing"),
            "only lo drops outgoing packets: {}",
            capture.filter_description()
        );
        assert!(!capture.is_up(), "a new veth starts down");
        netns::run("ip", &["link", "set", "mv0", "up"]).unwrap();
        capture
            .next_block(Duration::from_millis(50), |_| {})
            .unwrap();
        assert!(capture.is_up());

        netns::run("ip", &["link", "del", "mv0"]).unwrap();
        let start = Instant::now();
        let err = next_error(&mut capture);
        assert!(
            matches!(&err, LiveError::InterfaceGone { interface } if interface == "mv0"),
            "{err:?}"
        );
        // Found at the ENETDOWN, not at the periodic index check.
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(
            err.to_string(),
            "interface mv0 was removed or re-created: the capture must be reopened"
        );
    });
}

#[test]
fn a_recreated_interface_ends_the_capture() {
    in_netns("a_recreated_interface_ends_the_capture", || {
        if !veth() {
            return;
        }
        let Some(mut capture) = open(&LiveConfig::new("mv0")) else {
            return;
        };
        let opened = Instant::now();
        // Bound while down: the kernel set ENETDOWN at `bind`, which the first wait reads.
        assert_eq!(
            capture
                .next_block(Duration::from_millis(50), |_| {})
                .unwrap(),
            0
        );
        assert!(!capture.is_up());
        assert_eq!(capture.stats().down_events, 0, "it was never up");
        // Removed while down (no error reaches the socket) and made again under the same
        // name: only the periodic index check can tell.
        netns::run("ip", &["link", "del", "mv0"]).unwrap();
        assert!(veth());
        let err = next_error(&mut capture);
        assert!(
            matches!(&err, LiveError::InterfaceGone { interface } if interface == "mv0"),
            "{err:?}"
        );
        assert!(opened.elapsed() >= INDEX_CHECK_INTERVAL - Duration::from_millis(100));
    });
}

/// CPU time (user + system) of the calling thread, from `/proc/thread-self/stat`.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // utime and stime are fields 14 and 15 (1-based, counting pid and comm), in clock ticks
    // (100 per second on Linux).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Request/response load on `addr` from `clients` keep-alive connections for `duration`:
/// 64-byte requests, 32-byte responses. Returns the requests completed.
fn load(addr: SocketAddr, clients: usize, duration: Duration) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (done, stop) = (done.clone(), stop.clone());
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.set_nodelay(true).unwrap();
                let mut response = [0u8; 32];
                while !stop.load(Ordering::Relaxed) {
                    stream.write_all(&[b'q'; 64]).unwrap();
                    stream.read_exact(&mut response).unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    done.load(Ordering::Relaxed)
}

/// A server answering every 64-byte request with 32 bytes, one thread per connection.
fn request_server(listener: TcpListener) {
    thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            thread::spawn(move || {
                let mut request = [0u8; 64];
                while stream.read_exact(&mut request).is_ok() {
                    if stream.write_all(&[b'r'; 32]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

#[test]
#[ignore = "a load measurement: run with --ignored --nocapture"]
fn lo_load() {
    in_netns("lo_load", || {
        let seconds = 3;
        let clients = 8;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        request_server(listener);
        let baseline = load(addr, clients, Duration::from_secs(seconds));

        let Some(mut capture) = open(&lo_config(&[addr.port()])) else {
            return;
        };
        let stop = Arc::new(AtomicBool::new(false));
        let loader = {
            let stop = stop.clone();
            thread::spawn(move || {
                let requests = load(addr, clients, Duration::from_secs(seconds));
                stop.store(true, Ordering::Relaxed);
                requests
            })
        };
        let cpu0 = thread_cpu();
        let start = Instant::now();
        let mut lag_max = 0u64;
        let mut lag_sum = 0u64;
        while !stop.load(Ordering::Relaxed) {
            capture
                .next_block(Duration::from_millis(100), |p| {
                    let lag = now_ns().saturating_sub(p.ts_ns);
                    lag_max = lag_max.max(lag);
                    lag_sum += lag;
                })
                .unwrap();
        }
        let requests = loader.join().unwrap();
        while capture
            .next_block(Duration::from_millis(100), |_| {})
            .unwrap()
            > 0
        {}
        let wall = start.elapsed();
        let cpu = thread_cpu() - cpu0;
        let stats = capture.stats();
        let kernel = capture.kernel_stats().unwrap();
        println!(
            "lo_load: {clients} clients x {seconds} s; without capture {:.1}K req/s, with {:.1}K req/s",
            baseline as f64 / seconds as f64 / 1e3,
            requests as f64 / seconds as f64 / 1e3
        );
        println!(
            "  captured {} packets ({:.1}K pps, {:.2} per request), {} blocks, {} polls",
            stats.packets,
            stats.packets as f64 / wall.as_secs_f64() / 1e3,
            stats.packets as f64 / requests as f64,
            stats.blocks,
            stats.polls
        );
        println!(
            "  kernel: {} packets, {} drops, {} freezes; reader CPU {:.2} s in {:.2} s; lag mean {:.1} ms, max {:.1} ms",
            kernel.packets,
            kernel.drops,
            kernel.freezes,
            cpu.as_secs_f64(),
            wall.as_secs_f64(),
            lag_sum as f64 / stats.packets.max(1) as f64 / 1e6,
            lag_max as f64 / 1e6
        );
        assert_eq!(stats.outgoing_on_lo, 0);
        assert_eq!(kernel.packets, stats.packets);
    });
}
