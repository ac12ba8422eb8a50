#!/usr/bin/env python3
"""Writes the three flood captures of issue 14 (classic pcap, Ethernet, IPv4) to a directory:
syn_flood.pcap (200,000 SYNs from distinct clients), requests_1k.pcap (100,000 connections, each
a handshake and 1 KiB of a request head that never ends) and requests_60k.pcap (30,000
connections with 60 KB each). Used to measure meshsniff's peak memory on them (not by tests)."""
import struct, sys, os

def ip_checksum(h):
    s = sum(struct.unpack("!10H", h))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return (~s) & 0xFFFF

def frame(src, dst, sport, dport, seq, ack, flags, payload):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    return eth + ip + tcp + payload

class Pcap:
    def __init__(self, path):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.t = 1_700_000_000_000_000
    def write(self, data):
        self.t += 10
        self.f.write(struct.pack("<IIII", self.t // 1_000_000, self.t % 1_000_000, len(data), len(data)))
        self.f.write(data)

SERVER = bytes([10, 255, 0, 1])

def client(i):
    return bytes([10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF]), 1024 + (i % 50000)

def syn_flood(path, n):
    p = Pcap(path)
    for i in range(n):
        ip, port = client(i)
        p.write(frame(ip, SERVER, port, 8080, 1000 + i, 0, 0x02, b""))

def requests(path, n, size):
    p = Pcap(path)
    head = b"GET /" + b"a" * (size - 5)
    for i in range(n):
        ip, port = client(i)
        p.write(frame(ip, SERVER, port, 8080, 100, 0, 0x02, b""))
        p.write(frame(SERVER, ip, 8080, port, 500, 101, 0x12, b""))
        seq = 101
        for at in range(0, len(head), 1448):
            piece = head[at:at + 1448]
            p.write(frame(ip, SERVER, port, 8080, seq, 501, 0x18, piece))
            seq += len(piece)

out = sys.argv[1] if len(sys.argv) > 1 else "."
os.makedirs(out, exist_ok=True)
syn_flood(os.path.join(out, "syn_flood.pcap"), 200_000)
requests(os.path.join(out, "requests_1k.pcap"), 100_000, 1024)
requests(os.path.join(out, "requests_60k.pcap"), 30_000, 60_000)
