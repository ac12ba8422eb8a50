//! The classic BPF generator (`examples::capture::live::bpf`), run by a small interpreter kept here: on
//! packets built with etherparse, on every frame of the bundled captures (against a decision
//! computed with etherparse), on random specs and packets, at sizes that need `ja`
//! trampolines, and, when tcpdump is installed, against tcpdump's own program for the
//! expression `describe` gives.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, IpFragOffset, IpHeaders, IpNumber,
    Ipv4Header, Ipv6Extensions, Ipv6Header, Ipv6RawExtHeader, NetSlice, PacketBuilder,
    SlicedPacket, TransportSlice, VlanId,
};
use examples::capture::live::bpf::{
    FilterError, FilterSpec, Insn, Link, MAX_INSNS, SNAPLEN, describe, program,
};
use examples::capture::{self, LinkType};
use proptest::prelude::*;

/// `SKF_AD_OFF + SKF_AD_PKTTYPE`.
const PKTTYPE: u32 = 0xffff_f004;
/// `PACKET_HOST`, `PACKET_OUTGOING`.
const HOST: u32 = 0;
const OUTGOING: u32 = 4;

// ---------------------------------------------------------------------------------------------
// The interpreter.

/// Checks `program` as the kernel does on attach (`bpf_check_classic`): a length in
/// 1..=4096, every jump inside the program, a `ret` last; and only opcodes [`run`] knows.
fn validate(program: &[Insn]) -> Result<(), String> {
    if program.is_empty() || program.len() > MAX_INSNS {
        return Err(format!("length {}", program.len()));
    }
    for (pc, insn) in program.iter().enumerate() {
        let after = program.len() - pc - 1;
        match insn.code {
            0x20 | 0x28 | 0x30 | 0x48 | 0x50 | 0xb1 | 0x54 | 0x06 | 0x16 => {}
            0x05 => {
                if insn.k as usize >= after {
                    return Err(format!("pc {pc}: ja {} out of range", insn.k));
                }
            }
            0x15 | 0x25 | 0x35 | 0x45 => {
                if usize::from(insn.jt) >= after || usize::from(insn.jf) >= after {
                    return Err(format!("pc {pc}: jump {insn:?} out of range"));
                }
            }
            code => return Err(format!("pc {pc}: opcode {code:#x}")),
        }
    }
    match program.last() {
        Some(Insn {
            code: 0x06 | 0x16, ..
        }) => Ok(()),
        last => Err(format!("last instruction {last:?} is not a ret")),
    }
}

/// `size` bytes at `at`, big-endian; `None` out of bounds.
fn bytes(packet: &[u8], at: usize, size: usize) -> Option<u32> {
    let field = packet.get(at..at.checked_add(size)?)?;
    Some(
        field
            .iter()
            .fold(0, |word, byte| word << 8 | u32::from(*byte)),
    )
}

/// Runs a [validated](validate) program as the kernel does: an out-of-bounds load ends it with
/// 0, and the packet-type ancillary load answers `pkttype`.
fn run(program: &[Insn], packet: &[u8], pkttype: u32) -> u32 {
    let (mut a, mut x) = (0_u32, 0_u32);
    let mut pc = 0;
    loop {
        let insn = program[pc];
        pc += 1;
        let k = insn.k as usize;
        let load = |at: usize, size| bytes(packet, at, size);
        let loaded = match insn.code {
            0x20 if insn.k == PKTTYPE => Some(pkttype),
            0x20 if insn.k >= 0xffff_f000 => panic!("ancillary load {:#x}", insn.k),
            0x20 => load(k, 4),
            0x28 => load(k, 2),
            0x30 => load(k, 1),
            0x48 => load(x as usize + k, 2),
            0x50 => load(x as usize + k, 1),
            0xb1 => {
                let Some(byte) = load(k, 1) else { return 0 };
                x = 4 * (byte & 0xf);
                continue;
            }
            0x54 => Some(a & insn.k),
            0x05 => {
                pc += k;
                continue;
            }
            0x15 | 0x25 | 0x35 | 0x45 => {
                let taken = match insn.code {
                    0x15 => a == insn.k,
                    0x25 => a > insn.k,
                    0x35 => a >= insn.k,
                    _ => a & insn.k != 0,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
                continue;
            }
            0x06 => return insn.k,
            0x16 => return a,
            code => panic!("opcode {code:#x}"),
        };
        match loaded {
            Some(value) => a = value,
            None => return 0,
        }
    }
}

/// Whether `spec`'s program keeps `packet`, after checking the program and that it returns
/// either [`SNAPLEN`] or 0.
fn keeps(spec: &FilterSpec<'_>, packet: &[u8], pkttype: u32) -> bool {
    let insns = program(spec).unwrap();
    decide(&insns, packet, pkttype)
}

fn decide(insns: &[Insn], packet: &[u8], pkttype: u32) -> bool {
    validate(insns).unwrap();
    match run(insns, packet, pkttype) {
        SNAPLEN => true,
        0 => false,
        other => panic!("ret #{other}"),
    }
}

#[test]
fn interpreter_basics() {
    // ldh [12]; jeq #0x800 jt 0 jf 1; ret #1; ret #0 — and out-of-bounds returns 0.
    let insns = [
        Insn {
            code: 0x28,
            jt: 0,
            jf: 0,
            k: 12,
        },
        Insn {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: 0x800,
        },
        Insn {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 1,
        },
        Insn {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    validate(&insns).unwrap();
    let mut frame = [0_u8; 14];
    frame[12] = 8;
    assert_eq!(run(&insns, &frame, HOST), 1);
    assert_eq!(run(&insns, &frame[..13], HOST), 0);
    let mut bad = insns;
    bad[1].jf = 2;
    assert!(validate(&bad).is_err());
    assert!(validate(&insns[2..]).is_ok());
    assert!(
        validate(&insns[..3]).is_err(),
        "jf 1 at pc 1 lands past the end"
    );
    assert!(validate(&insns[..1]).is_err(), "must end in ret");
    assert!(validate(&[]).is_err());
}

// ---------------------------------------------------------------------------------------------
// Packets.

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

fn v4(address: &str) -> [u8; 4] {
    address.parse::<Ipv4Addr>().unwrap().octets()
}

fn v6(address: &str) -> [u8; 16] {
    address.parse::<Ipv6Addr>().unwrap().octets()
}

fn ip(address: &str) -> IpAddr {
    address.parse().unwrap()
}

fn ether() -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
    PacketBuilder::ethernet2(MAC_A, MAC_B)
}

fn tcp4(source: &str, destination: &str, sport: u16, dport: u16) -> Vec<u8> {
    let builder = ether()
        .ipv4(v4(source), v4(destination), 64)
        .tcp(sport, dport, 1, 1024);
    let mut out = Vec::new();
    builder.write(&mut out, PAYLOAD).unwrap();
    out
}

fn tcp6(source: &str, destination: &str, sport: u16, dport: u16) -> Vec<u8> {
    let builder = ether()
        .ipv6(v6(source), v6(destination), 64)
        .tcp(sport, dport, 1, 1024);
    let mut out = Vec::new();
    builder.write(&mut out, PAYLOAD).unwrap();
    out
}

fn udp4(sport: u16, dport: u16) -> Vec<u8> {
    let builder = ether()
        .ipv4(v4("10.0.0.1"), v4("10.0.0.2"), 64)
        .udp(sport, dport);
    let mut out = Vec::new();
    builder.write(&mut out, PAYLOAD).unwrap();
    out
}

fn udp6(sport: u16, dport: u16) -> Vec<u8> {
    let builder = ether()
        .ipv6(v6("fd00::1"), v6("fd00::2"), 64)
        .udp(sport, dport);
    let mut out = Vec::new();
    builder.write(&mut out, PAYLOAD).unwrap();
    out
}

fn icmp4() -> Vec<u8> {
    let builder = ether()
        .ipv4(v4("10.0.0.1"), v4("10.0.0.2"), 64)
        .icmpv4_echo_request(1, 1);
    let mut out = Vec::new();
    builder.write(&mut out, PAYLOAD).unwrap();
    out
}

fn arp() -> Vec<u8> {
    let request = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &MAC_A,
        &v4("10.0.0.1"),
        &[0; 6],
        &v4("10.0.0.2"),
    )
    .unwrap();
    let mut out = Vec::new();
    ether().arp(request).write(&mut out).unwrap();
    out
}

fn vlan_tcp4(sport: u16, dport: u16) -> Vec<u8> {
    let builder = ether()
        .single_vlan(VlanId::try_new(7).unwrap())
        .ipv4(v4("10.0.0.1"), v4("10.0.0.2"), 64)
        .tcp(sport, dport, 1, 1024);
    let mut out = Vec::new();
    builder.write(&mut out, PAYLOAD).unwrap();
    out
}

fn ipv4_header(fragment_offset: u16, more_fragments: bool, options: &[u8]) -> Ipv4Header {
    let mut header = Ipv4Header::new(0, 64, IpNumber::TCP, v4("10.0.0.1"), v4("10.0.0.2")).unwrap();
    header.fragment_offset = IpFragOffset::try_new(fragment_offset).unwrap();
    header.more_fragments = more_fragments;
    header.options = options.try_into().unwrap();
    header
}

/// IPv4 TCP from a hand-made header; the TCP header is written where it would be unfragmented.
fn tcp4_with(header: Ipv4Header, sport: u16, dport: u16) -> Vec<u8> {
    let builder = ether()
        .ip(IpHeaders::Ipv4(header, Default::default()))
        .tcp(sport, dport, 1, 1024);
    let mut out = Vec::new();
    builder.write(&mut out, PAYLOAD).unwrap();
    out
}

/// IPv6 TCP behind a hop-by-hop options header.
fn tcp6_hop_by_hop(sport: u16, dport: u16) -> Vec<u8> {
    let header = Ipv6Header {
        hop_limit: 64,
        source: v6("fd00::1"),
        destination: v6("fd00::2"),
        ..Default::default()
    };
    let extensions = Ipv6Extensions {
        hop_by_hop_options: Some(
            Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[1, 4, 0, 0, 0, 0]).unwrap(),
        ),
        ..Default::default()
    };
    let builder = ether()
        .ip(IpHeaders::Ipv6(header, extensions))
        .tcp(sport, dport, 1, 1024);
    let mut out = Vec::new();
    builder.write(&mut out, PAYLOAD).unwrap();
    out
}

/// The same packet without its Ethernet header (a `SOCK_DGRAM` capture).
fn raw(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

fn spec<'a>(ports: &'a [u16], hosts: &'a [IpAddr]) -> FilterSpec<'a> {
    FilterSpec {
        ports,
        hosts,
        link: Link::Ethernet,
        drop_outgoing: false,
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions on crafted packets.

/// The generator's `tcp port 80` is tcpdump's listing (spec §4) with IPv4 tested first.
#[test]
fn port_80_listing() {
    let rows: Vec<(u16, u8, u8, u32)> = program(&spec(&[80], &[]))
        .unwrap()
        .iter()
        .map(|insn| (insn.code, insn.jt, insn.jf, insn.k))
        .collect();
    #[rustfmt::skip]
    let expected = [
        (0x28, 0, 0, 12),                          // 00 ldh [12]
        (0x15, 1, 0, 0x0800),                      // 01 jeq #0x800   -> 03
        (0x15, 9, 16, 0x86dd),                     // 02 jeq #0x86dd  -> 12 else 19
        (0x30, 0, 0, 23),                          // 03 ldb [23]
        (0x15, 0, 14, 6),                          // 04 jeq #6       else 19
        (0x28, 0, 0, 20),                          // 05 ldh [20]
        (0x45, 12, 0, 0x1fff),                     // 06 jset #0x1fff -> 19
        (0xb1, 0, 0, 14),                          // 07 ldxb 4*([14]&0xf)
        (0x48, 0, 0, 14),                          // 08 ldh [x + 14]
        (0x15, 8, 0, 80),                          // 09 jeq #80      -> 18
        (0x48, 0, 0, 16),                          // 10 ldh [x + 16]
        (0x15, 6, 7, 80),                          // 11 jeq #80      -> 18 else 19
        (0x30, 0, 0, 20),                          // 12 ldb [20]
        (0x15, 0, 5, 6),                           // 13 jeq #6       else 19
        (0x28, 0, 0, 54),                          // 14 ldh [54]
        (0x15, 2, 0, 80),                          // 15 jeq #80      -> 18
        (0x28, 0, 0, 56),                          // 16 ldh [56]
        (0x15, 0, 1, 80),                          // 17 jeq #80      -> 18 else 19
        (0x06, 0, 0, SNAPLEN),                     // 18 ret #262144
        (0x06, 0, 0, 0),                           // 19 ret #0
    ];
    assert_eq!(rows, expected);
}

#[test]
fn no_ports_no_hosts_keeps_all_tcp() {
    let all = spec(&[], &[]);
    assert_eq!(program(&all).unwrap().len(), 11);
    assert!(keeps(&all, &tcp4("10.0.0.1", "10.0.0.2", 40000, 1), HOST));
    assert!(keeps(&all, &tcp6("fd00::1", "fd00::2", 1, 2), HOST));
    assert!(keeps(
        &all,
        &tcp4_with(ipv4_header(0, false, &[1; 8]), 5, 6),
        HOST
    ));
    for other in [udp4(1, 2), udp6(1, 2), icmp4(), arp(), vlan_tcp4(1, 2)] {
        assert!(!keeps(&all, &other, HOST));
    }
    // Later fragments and IPv6 extension headers are rejected even here.
    assert!(!keeps(
        &all,
        &tcp4_with(ipv4_header(8, false, &[]), 5, 6),
        HOST
    ));
    assert!(!keeps(&all, &tcp6_hop_by_hop(5, 6), HOST));
    assert!(!keeps(&all, &[], HOST));
}

#[test]
fn ports_either_direction() {
    let web = spec(&[8080, 80], &[]);
    for (sport, dport, kept) in [
        (80, 40000, true),
        (40000, 80, true),
        (8080, 1, true),
        (1, 8080, true),
        (80, 8080, true),
        (81, 40000, false),
        (40000, 8081, false),
        (0, 0, false),
        (0x50, 0x1f91, true),
    ] {
        let v4 = tcp4("10.0.0.1", "10.0.0.2", sport, dport);
        let v6 = tcp6("fd00::1", "fd00::2", sport, dport);
        assert_eq!(keeps(&web, &v4, HOST), kept, "v4 {sport} -> {dport}");
        assert_eq!(keeps(&web, &v6, HOST), kept, "v6 {sport} -> {dport}");
        assert!(!keeps(&web, &vlan_tcp4(sport, dport), HOST));
    }
}

#[test]
fn other_protocols_on_the_port_are_rejected() {
    let web = spec(&[80], &[]);
    assert!(!keeps(&web, &udp4(80, 80), HOST));
    assert!(!keeps(&web, &udp6(80, 80), HOST));
    assert!(!keeps(&web, &icmp4(), HOST));
    assert!(!keeps(&web, &arp(), HOST));
    // VLAN-tagged: pod veths carry no tags, so the filter does not look inside.
    assert!(!keeps(&web, &vlan_tcp4(80, 80), HOST));
}

#[test]
fn ipv4_options_and_fragments() {
    let web = spec(&[80], &[]);
    // IHL 7 and 15: the ports are found after the options.
    for options in [&[1_u8; 8][..], &[1; 40][..]] {
        assert!(keeps(
            &web,
            &tcp4_with(ipv4_header(0, false, options), 5, 80),
            HOST
        ));
        assert!(keeps(
            &web,
            &tcp4_with(ipv4_header(0, false, options), 80, 5),
            HOST
        ));
        assert!(!keeps(
            &web,
            &tcp4_with(ipv4_header(0, false, options), 5, 81),
            HOST
        ));
    }
    // The first fragment carries the TCP header; the others are rejected.
    assert!(keeps(
        &web,
        &tcp4_with(ipv4_header(0, true, &[]), 5, 80),
        HOST
    ));
    for offset in [1, 185, 0x1fff] {
        for more in [false, true] {
            let fragment = tcp4_with(ipv4_header(offset, more, &[]), 5, 80);
            assert!(!keeps(&web, &fragment, HOST), "offset {offset}");
        }
    }
    // Don't-fragment is not a fragment.
    let mut header = ipv4_header(0, false, &[]);
    header.dont_fragment = true;
    assert!(keeps(&web, &tcp4_with(header, 5, 80), HOST));
}

#[test]
fn ipv6_extension_headers_are_rejected() {
    assert!(!keeps(&spec(&[80], &[]), &tcp6_hop_by_hop(5, 80), HOST));
}

#[test]
fn hosts_match_source_or_destination() {
    let hosts = [ip("10.0.0.7"), ip("192.168.1.1")];
    let port = [443];
    let filter = spec(&port, &hosts);
    assert!(keeps(&filter, &tcp4("10.0.0.7", "1.2.3.4", 443, 5), HOST));
    assert!(keeps(&filter, &tcp4("1.2.3.4", "10.0.0.7", 5, 443), HOST));
    assert!(keeps(
        &filter,
        &tcp4("192.168.1.1", "10.0.0.7", 5, 443),
        HOST
    ));
    assert!(
        !keeps(&filter, &tcp4("10.0.0.7", "1.2.3.4", 5, 444), HOST),
        "port"
    );
    assert!(
        !keeps(&filter, &tcp4("10.0.0.8", "1.2.3.4", 443, 5), HOST),
        "host"
    );
    // Only IPv4 hosts given: IPv6 goes, whatever the port.
    assert!(!keeps(&filter, &tcp6("fd00::1", "fd00::2", 443, 5), HOST));
    let program = program(&filter).unwrap();
    assert!(program.iter().all(|insn| insn.k != 0x86dd), "{program:?}");

    let hosts = [ip("2001:db8::1"), ip("2001:db8::2"), ip("2001:db8:0:1::1")];
    let filter = spec(&[], &hosts);
    for (source, destination, kept) in [
        ("2001:db8::1", "fd00::9", true),
        ("fd00::9", "2001:db8::1", true),
        ("fd00::9", "2001:db8::2", true),
        ("2001:db8:0:1::1", "fd00::9", true),
        ("fd00::9", "2001:db8:0:1::1", true),
        // Equal in three words of four, in each position.
        ("2001:db8::3", "fd00::9", false),
        ("2001:db9::1", "fd00::9", false),
        ("2001:db8:0:2::1", "fd00::9", false),
        ("2001:db8::1:0:1", "fd00::9", false),
        ("fd00::9", "fd00::8", false),
    ] {
        let packet = tcp6(source, destination, 1, 2);
        assert_eq!(
            keeps(&filter, &packet, HOST),
            kept,
            "{source} -> {destination}"
        );
    }
    // Only IPv6 hosts given: IPv4 goes.
    assert!(!keeps(&filter, &tcp4("10.0.0.1", "10.0.0.2", 1, 2), HOST));
}

#[test]
fn mixed_host_lists() {
    let hosts = [ip("10.0.0.1"), ip("fd00::1"), ip("10.0.0.1")];
    let ports = [80, 80];
    let filter = spec(&ports, &hosts);
    assert!(keeps(&filter, &tcp4("10.0.0.1", "10.0.0.2", 80, 5), HOST));
    assert!(keeps(&filter, &tcp4("10.0.0.2", "10.0.0.1", 5, 80), HOST));
    assert!(!keeps(&filter, &tcp4("10.0.0.2", "10.0.0.3", 5, 80), HOST));
    assert!(keeps(&filter, &tcp6("fd00::1", "fd00::2", 80, 5), HOST));
    assert!(keeps(&filter, &tcp6("fd00::2", "fd00::1", 5, 80), HOST));
    assert!(!keeps(&filter, &tcp6("fd00::2", "fd00::3", 5, 80), HOST));
    assert!(!keeps(&filter, &tcp6("fd00::1", "fd00::3", 5, 81), HOST));
    // An IPv4 packet is not matched against IPv6 hosts: ::a00:1 spells 10.0.0.1 in its last
    // word.
    let filter = spec(&[], &hosts[1..2]);
    assert!(!keeps(&filter, &tcp4("10.0.0.1", "10.0.0.1", 80, 80), HOST));
}

#[test]
fn raw_ip_link() {
    let hosts = [ip("10.0.0.1"), ip("fd00::1")];
    for hosts in [&[][..], &hosts[..]] {
        let filter = FilterSpec {
            link: Link::RawIp,
            ..spec(&[80], hosts)
        };
        let program = program(&filter).unwrap();
        assert_eq!(
            (program[0].code, program[0].k, program[1].code, program[1].k),
            (0x30, 0, 0x54, 0xf0),
            "ldb [0]; and #0xf0"
        );
        assert!(keeps(
            &filter,
            raw(&tcp4("10.0.0.1", "10.0.0.2", 80, 5)),
            HOST
        ));
        assert!(keeps(
            &filter,
            raw(&tcp6("fd00::2", "fd00::1", 5, 80)),
            HOST
        ));
        assert!(keeps(
            &filter,
            raw(&tcp4_with(ipv4_header(0, false, &[1; 12]), 5, 80)),
            HOST
        ));
        assert!(!keeps(
            &filter,
            raw(&tcp4("10.0.0.1", "10.0.0.2", 81, 5)),
            HOST
        ));
        assert!(!keeps(&filter, raw(&udp4(80, 80)), HOST));
        assert!(!keeps(&filter, raw(&udp6(80, 80)), HOST));
        assert!(!keeps(
            &filter,
            raw(&tcp4_with(ipv4_header(9, false, &[]), 5, 80)),
            HOST
        ));
        // An Ethernet frame is not IP: its first nibble is the MAC's.
        assert!(!keeps(&filter, &tcp4("10.0.0.1", "10.0.0.2", 80, 80), HOST));
        // Version 5 and 7 are neither.
        let mut odd = raw(&tcp4("10.0.0.1", "10.0.0.2", 80, 80)).to_vec();
        odd[0] = 0x55;
        assert!(!keeps(&filter, &odd, HOST));
        odd[0] = 0x75;
        assert!(!keeps(&filter, &odd, HOST));
    }
    let v6_only = FilterSpec {
        link: Link::RawIp,
        ..spec(&[], &hosts[1..])
    };
    assert!(keeps(
        &v6_only,
        raw(&tcp6("fd00::2", "fd00::1", 5, 80)),
        HOST
    ));
    assert!(!keeps(
        &v6_only,
        raw(&tcp4("10.0.0.1", "10.0.0.2", 80, 5)),
        HOST
    ));
}

#[test]
fn drop_outgoing_by_packet_type() {
    let packet = tcp4("127.0.0.1", "127.0.0.1", 40000, 8080);
    let ports = [8080];
    let lo = FilterSpec {
        drop_outgoing: true,
        ..spec(&ports, &[])
    };
    let insns = program(&lo).unwrap();
    assert_eq!((insns[0].code, insns[0].k), (0x20, PKTTYPE));
    assert_eq!((insns[1].code, insns[1].k), (0x15, 4));
    assert!(keeps(&lo, &packet, HOST));
    assert!(!keeps(&lo, &packet, OUTGOING));
    for pkttype in [1, 2, 3] {
        assert!(keeps(&lo, &packet, pkttype), "pkttype {pkttype}");
    }
    assert!(keeps(&spec(&ports, &[]), &packet, OUTGOING));
    assert_eq!(insns.len(), program(&spec(&ports, &[])).unwrap().len() + 2);
}

/// Every prefix of a kept packet is decided without reading past it: those cut before the
/// matching port are rejected (an out-of-bounds load returns 0), the others kept.
#[test]
fn truncated_packets() {
    let web = spec(&[80], &[]);
    for (packet, port_end) in [
        (tcp4("10.0.0.1", "10.0.0.2", 5, 80), 14 + 20 + 4),
        (
            tcp4_with(ipv4_header(0, false, &[1; 8]), 5, 80),
            14 + 28 + 4,
        ),
        (tcp6("fd00::1", "fd00::2", 5, 80), 14 + 40 + 4),
    ] {
        for cut in 0..=packet.len() {
            assert_eq!(
                keeps(&web, &packet[..cut], HOST),
                cut >= port_end,
                "cut {cut}"
            );
        }
    }
}

#[test]
fn describe_expressions() {
    let hosts = [ip("fd00::1"), ip("127.0.0.1"), ip("10.0.0.1")];
    assert_eq!(describe(&spec(&[], &[])), "tcp");
    assert_eq!(
        describe(&spec(&[8080, 80, 80], &hosts[1..2])),
        "tcp and (port 80 or port 8080) and (host 127.0.0.1)"
    );
    assert_eq!(
        describe(&spec(&[], &hosts)),
        "tcp and (host 10.0.0.1 or host 127.0.0.1 or host fd00::1)"
    );
    let lo = FilterSpec {
        drop_outgoing: true,
        ..spec(&[3306], &[])
    };
    assert_eq!(describe(&lo), "inbound and tcp and (port 3306)");
}

// ---------------------------------------------------------------------------------------------
// The bundled captures, against an independent decision.

/// What the filter should decide, computed with etherparse: TCP right after an IPv4 header
/// (first fragment) or a fixed IPv6 header, no VLAN tag, a listed port and host on either side.
fn reference(packet: &[u8], link: Link, ports: &[u16], hosts: &[IpAddr]) -> bool {
    let sliced = match link {
        Link::Ethernet => SlicedPacket::from_ethernet(packet),
        Link::RawIp => SlicedPacket::from_ip(packet),
    };
    let Ok(sliced) = sliced else { return false };
    if !sliced.link_exts.is_empty() {
        return false;
    }
    let (source, destination) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => {
            let header = ip.header();
            if header.fragments_offset().value() != 0 {
                return false;
            }
            (
                IpAddr::V4(header.source_addr()),
                IpAddr::V4(header.destination_addr()),
            )
        }
        Some(NetSlice::Ipv6(ip)) => {
            let header = ip.header();
            if header.next_header() != IpNumber::TCP {
                return false;
            }
            (
                IpAddr::V6(header.source_addr()),
                IpAddr::V6(header.destination_addr()),
            )
        }
        _ => return false,
    };
    let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
        return false;
    };
    let port = |port| ports.is_empty() || ports.contains(&port);
    let host = |host| hosts.is_empty() || hosts.contains(&host);
    (port(tcp.source_port()) || port(tcp.destination_port())) && (host(source) || host(destination))
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

/// The Ethernet frames of a bundled capture.
fn frames(name: &str) -> Vec<Vec<u8>> {
    let mut capture = capture::open(&data(name)).unwrap();
    let mut frames = Vec::new();
    while let Some(packet) = capture.next_packet() {
        let packet = packet.unwrap();
        if packet.link == LinkType::Ethernet {
            frames.push(packet.data.to_vec());
        }
    }
    assert!(!frames.is_empty(), "{name}");
    frames
}

const CAPTURES: [&str; 3] = ["http_ab.pcap.gz", "http_curl.pcap.gz", "mesh_demo.pcap.gz"];

#[test]
fn captures_agree_with_etherparse() {
    let localhost = [ip("127.0.0.1")];
    let elsewhere = [ip("10.1.2.3"), ip("::1")];
    let cases: [(&[u16], &[IpAddr]); 6] = [
        (&[80], &[]),
        (&[8080], &[]),
        (&[3306, 27017], &[]),
        (&[], &[]),
        (&[8081], &localhost),
        (&[8080, 8081], &elsewhere),
    ];
    let mut kept = 0;
    let mut rejected = 0;
    for name in CAPTURES {
        let frames = frames(name);
        for (ports, hosts) in cases {
            let filter = spec(ports, hosts);
            let insns = program(&filter).unwrap();
            for (index, frame) in frames.iter().enumerate() {
                let decision = decide(&insns, frame, HOST);
                let expected = reference(frame, Link::Ethernet, ports, hosts);
                assert_eq!(
                    decision,
                    expected,
                    "{name} frame {index}, {}",
                    describe(&filter)
                );
                if decision {
                    kept += 1;
                } else {
                    rejected += 1;
                }
            }
        }
    }
    assert!(
        kept > 10_000 && rejected > 10_000,
        "{kept} kept, {rejected} rejected"
    );
}

// ---------------------------------------------------------------------------------------------
// Sizes.

fn many_hosts(v4: u8, v6: u16) -> Vec<IpAddr> {
    let mut hosts: Vec<IpAddr> = (0..v4)
        .map(|n| IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)))
        .collect();
    hosts.extend((0..v6).map(|n| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, n, 1))));
    hosts
}

#[test]
fn many_ports_and_hosts_use_trampolines() {
    let ports: Vec<u16> = (1000..1300).collect();
    let hosts = many_hosts(20, 20);
    let filter = spec(&ports, &hosts);
    let insns = program(&filter).unwrap();
    validate(&insns).unwrap();
    let trampolines = insns.iter().filter(|insn| insn.code == 0x05).count();
    assert!(
        insns.len() > 1000 && trampolines > 0,
        "{} instructions, {trampolines} ja",
        insns.len()
    );

    let mut kept = 0;
    let v4_hosts = ["10.0.0.0", "10.0.0.19", "10.0.0.20", "10.9.9.9"];
    let v6_hosts = ["fd00::1", "fd00::13:1", "fd00::14:1", "fd00::1:0:1"];
    for (sport, dport) in [
        (1000, 5),
        (5, 1000),
        (1299, 5),
        (5, 1299),
        (1150, 1),
        (999, 1300),
    ] {
        for (a, b) in [(0, 3), (3, 1), (2, 3), (1, 0)] {
            for packet in [
                tcp4(v4_hosts[a], v4_hosts[b], sport, dport),
                tcp6(v6_hosts[a], v6_hosts[b], sport, dport),
            ] {
                let decision = decide(&insns, &packet, HOST);
                assert_eq!(decision, reference(&packet, Link::Ethernet, &ports, &hosts));
                kept += usize::from(decision);
            }
        }
    }
    assert!(kept > 0);
}

#[test]
fn absurd_sizes_are_too_long() {
    let ports: Vec<u16> = (1..=u16::MAX).collect();
    match program(&spec(&ports, &[])) {
        Err(FilterError::TooLong { insns }) => assert!(insns > MAX_INSNS),
        other => panic!("{other:?}"),
    }
    let hosts = many_hosts(0, 1000);
    assert!(matches!(
        program(&spec(&[], &hosts)),
        Err(FilterError::TooLong { .. })
    ));
    assert!(
        program(&spec(&[], &hosts))
            .unwrap_err()
            .to_string()
            .contains("4096")
    );
}

/// Around the limit every program is either valid and at most 4096 long, or refused.
#[test]
fn the_limit() {
    let mut fits = 0;
    let mut refused = 0;
    for count in (990..1030).step_by(3) {
        let ports: Vec<u16> = (2000..2000 + count).collect();
        match program(&spec(&ports, &[])) {
            Ok(insns) => {
                validate(&insns).unwrap();
                let last = tcp6("fd00::1", "fd00::2", 5, 2000 + count - 1);
                assert!(decide(&insns, &last, HOST));
                fits += 1;
            }
            Err(FilterError::TooLong { insns }) => {
                assert!(insns > MAX_INSNS);
                refused += 1;
            }
        }
    }
    assert!(fits > 0 && refused > 0, "{fits} fit, {refused} refused");
}

// ---------------------------------------------------------------------------------------------
// Random specs and packets.

/// A packet described by its fields, built for either link.
#[derive(Debug, Clone)]
struct Fields {
    source: IpAddr,
    destination: IpAddr,
    sport: u16,
    dport: u16,
    udp: bool,
}

fn build(fields: &Fields) -> Vec<u8> {
    let mut out = Vec::new();
    let builder = match (fields.source, fields.destination) {
        (IpAddr::V4(source), IpAddr::V4(destination)) => {
            ether().ipv4(source.octets(), destination.octets(), 64)
        }
        (IpAddr::V6(source), IpAddr::V6(destination)) => {
            ether().ipv6(source.octets(), destination.octets(), 64)
        }
        (source, destination) => panic!("{source} and {destination}: one family per packet"),
    };
    if fields.udp {
        builder
            .udp(fields.sport, fields.dport)
            .write(&mut out, PAYLOAD)
            .unwrap();
    } else {
        builder
            .tcp(fields.sport, fields.dport, 1, 1024)
            .write(&mut out, PAYLOAD)
            .unwrap();
    }
    out
}

fn address_pool() -> Vec<IpAddr> {
    [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
        "fd00::1",
        "fd00::2",
        "fd00::1:0:0:1",
    ]
    .into_iter()
    .map(ip)
    .collect()
}

fn spec_strategy() -> impl Strategy<Value = (Vec<u16>, Vec<IpAddr>, bool)> {
    (
        prop_oneof![
            prop::collection::vec(prop_oneof![Just(80_u16), Just(8080), 1_u16..2000], 0..6),
            prop::collection::vec(1_u16..2000, 0..700),
        ],
        prop_oneof![
            prop::collection::vec(prop::sample::select(address_pool()), 0..4),
            (0_u8..60, 0_u16..60).prop_map(|(v4, v6)| many_hosts(v4, v6)),
        ],
        any::<bool>(),
    )
}

fn fields_strategy(pool: Vec<IpAddr>) -> impl Strategy<Value = Fields> {
    let pool_v4: Vec<IpAddr> = pool.iter().copied().filter(IpAddr::is_ipv4).collect();
    let pool_v6: Vec<IpAddr> = pool.iter().copied().filter(IpAddr::is_ipv6).collect();
    let port = prop_oneof![Just(80_u16), Just(8080), 1_u16..2100];
    (
        prop_oneof![
            (
                prop::sample::select(pool_v4.clone()),
                prop::sample::select(pool_v4)
            ),
            (
                prop::sample::select(pool_v6.clone()),
                prop::sample::select(pool_v6)
            ),
        ],
        port.clone(),
        port,
        prop::bool::weighted(0.1),
    )
        .prop_map(|((source, destination), sport, dport, udp)| Fields {
            source,
            destination,
            sport,
            dport,
            udp,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_specs_and_packets(
        (ports, hosts, raw_link) in spec_strategy(),
        packets in prop::collection::vec(fields_strategy({
            let mut pool = address_pool();
            pool.extend(many_hosts(60, 60));
            pool
        }), 24),
    ) {
        let link = if raw_link { Link::RawIp } else { Link::Ethernet };
        let filter = FilterSpec { link, ..spec(&ports, &hosts) };
        let insns = match program(&filter) {
            Ok(insns) => insns,
            Err(FilterError::TooLong { insns }) => {
                prop_assert!(insns > MAX_INSNS);
                return Ok(());
            }
        };
        prop_assert!(validate(&insns).is_ok());
        for fields in &packets {
            let frame = build(fields);
            let packet = if raw_link { raw(&frame) } else { &frame[..] };
            let expected = !fields.udp
                && (ports.is_empty() || ports.contains(&fields.sport) || ports.contains(&fields.dport))
                && (hosts.is_empty() || hosts.contains(&fields.source) || hosts.contains(&fields.destination));
            prop_assert_eq!(decide(&insns, packet, HOST), expected, "{:?}", fields);
            prop_assert_eq!(reference(packet, link, &ports, &hosts), expected);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tcpdump, when installed.

/// tcpdump's program (`-dd`) for `expression` on Ethernet, compiled against an empty pcap
/// file so no interface or privilege is needed; `None` when tcpdump is not installed.
fn tcpdump(expression: &str) -> Option<Vec<Insn>> {
    let dir = std::env::temp_dir().join(format!("bpf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ethernet.pcap");
    // pcap header: magic, version 2.4, zone, sigfigs, snaplen 262144, link type 1 (Ethernet).
    let mut header = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    header.extend([0; 8]);
    header.extend(SNAPLEN.to_le_bytes());
    header.extend(1_u32.to_le_bytes());
    std::fs::write(&file, header).unwrap();
    let output = Command::new("tcpdump")
        .arg("-r")
        .arg(&file)
        .arg("-dd")
        .arg(expression)
        .output()
        .ok()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let number = |text: &str| {
        let text = text.trim();
        match text.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16).unwrap(),
            None => text.parse().unwrap(),
        }
    };
    let insns = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let fields: Vec<u32> = line
                .trim()
                .trim_start_matches('{')
                .trim_end_matches(',')
                .trim_end_matches('}')
                .split(',')
                .map(number)
                .collect();
            Insn {
                code: u16::try_from(fields[0]).unwrap(),
                jt: u8::try_from(fields[1]).unwrap(),
                jf: u8::try_from(fields[2]).unwrap(),
                k: fields[3],
            }
        })
        .collect();
    Some(insns)
}

/// The expression `describe` prints compiles, in tcpdump, to a program deciding every frame the
/// same way. The packets leave out the two documented differences (without a port, tcpdump
/// keeps later IPv4 fragments and looks past an IPv6 fragment header).
#[test]
fn tcpdump_agrees() {
    let installed = Command::new("tcpdump").arg("--version").output().is_ok();
    if !installed {
        eprintln!("skipped: tcpdump is not installed");
        return;
    }
    let hosts = [ip("127.0.0.1"), ip("::1"), ip("fd00::1"), ip("10.0.0.1")];
    let cases: [(&[u16], &[IpAddr]); 6] = [
        (&[80], &[]),
        (&[8080, 8081], &[]),
        (&[], &[]),
        (&[3306], &hosts[..1]),
        (&[], &hosts[..2]),
        (&[443, 80], &hosts[2..]),
    ];
    let mut packets = Vec::new();
    for name in CAPTURES {
        packets.extend(frames(name));
    }
    packets.extend([
        tcp4("10.0.0.1", "10.0.0.2", 80, 5),
        tcp4("10.0.0.3", "10.0.0.1", 5, 443),
        tcp6("fd00::1", "fd00::2", 80, 5),
        tcp6("fd00::2", "::1", 5, 443),
        tcp6("fd00::2", "fd00::1:0:0:1", 5, 443),
        tcp4_with(ipv4_header(0, false, &[1; 8]), 8081, 5),
        tcp6_hop_by_hop(5, 80),
        udp4(80, 80),
        udp6(443, 443),
        icmp4(),
        arp(),
        vlan_tcp4(80, 80),
    ]);
    for (ports, hosts) in cases {
        let filter = spec(ports, hosts);
        let expression = describe(&filter);
        let Some(theirs) = tcpdump(&expression) else {
            eprintln!("skipped: tcpdump did not run");
            return;
        };
        let ours = program(&filter).unwrap();
        let mut kept = 0;
        for (index, packet) in packets.iter().enumerate() {
            let decision = decide(&ours, packet, HOST);
            assert_eq!(
                decision,
                decide(&theirs, packet, HOST),
                "{expression}: packet {index}"
            );
            kept += usize::from(decision);
        }
        assert!(kept > 0, "{expression}");
    }
}
