#!/usr/bin/env python3
"""Derives the damaged copies of the two recorded captures (see README.md), gzips them all, and
prints what a decoder that loses nothing it could keep must report for each big reply.

Usage: thin.py RECORDED_DIR OUT_DIR   (RECORDED_DIR holds cli.pcap and deprecate_eof.pcap)

Losses are made the way a capture makes them: whole frames missing (their bytes are a hole in
the TCP sequence space), the start of a frame missing (the frame is rewritten to begin later in
the sequence space, lengths and checksums updated), or every frame cut at a snaplen."""

import gzip
import os
import struct
import sys

SERVER_PORT = 3391
# 96: tcpdump's old default (30 bytes of payload here); 300: the last segment of the 400-row
# replies shows whole; 1090: 1024 bytes of payload, DeepFlow's default payload truncation.
SNAPLENS = (96, 300, 1090)


def read_pcap(path):
    raw = open(path, "rb").read()
    assert raw[:4] == b"\xd4\xc3\xb2\xa1", "little-endian classic pcap"
    header, records, at = raw[:24], [], 24
    while at < len(raw):
        ts, tu, incl, orig = struct.unpack("<IIII", raw[at : at + 16])
        records.append([ts, tu, orig, raw[at + 16 : at + 16 + incl]])
        at += 16 + incl
    return header, records


def write_pcap_gz(path, header, records, snaplen=None):
    out = bytearray(header)
    if snaplen is not None:
        out[16:20] = struct.pack("<I", snaplen)
    for ts, tu, orig, data in records:
        if snaplen is not None:
            data = data[:snaplen]
        out += struct.pack("<IIII", ts, tu, len(data), orig) + data
    # mtime 0: the same bytes in, the same file out.
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as z:
        z.write(out)


def tcp(data):
    """(ip offset, tcp offset, payload offset) of an Ethernet + IPv4 + TCP frame."""
    ip = 14
    t = ip + (data[ip] & 15) * 4
    return ip, t, t + (data[t + 12] >> 4) * 4


def ports_seq(data):
    _, t, _ = tcp(data)
    return struct.unpack(">HHI", data[t : t + 8])


def checksum(b):
    if len(b) % 2:
        b += b"\x00"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def drop_front(record, n):
    """The frame without the first `n` bytes of its TCP payload, as if they had been lost."""
    ts, tu, orig, data = record
    ip, t, p = tcp(data)
    d = bytearray(data[:p] + data[p + n :])
    total = struct.unpack(">H", d[ip + 2 : ip + 4])[0] - n
    d[ip + 2 : ip + 4] = struct.pack(">H", total)
    d[ip + 10 : ip + 12] = b"\x00\x00"
    d[ip + 10 : ip + 12] = struct.pack(">H", checksum(bytes(d[ip:t])))
    seq = struct.unpack(">I", d[t + 4 : t + 8])[0]
    d[t + 4 : t + 8] = struct.pack(">I", (seq + n) & 0xFFFFFFFF)
    d[t + 16 : t + 18] = b"\x00\x00"
    pseudo = bytes(d[ip + 12 : ip + 20]) + struct.pack(">BBH", 0, 6, len(d) - t)
    d[t + 16 : t + 18] = struct.pack(">H", checksum(pseudo + bytes(d[t:])))
    return [ts, tu, orig - n, bytes(d)]


class Stream:
    """The server's byte stream: each data frame's place in it, and its MySQL packets."""

    def __init__(self, records):
        self.frames = []  # (record index, stream offset, payload length)
        isn = None
        for i, (_, _, _, data) in enumerate(records):
            sport, _, seq = ports_seq(data)
            flags = data[tcp(data)[1] + 13]
            if sport != SERVER_PORT:
                continue
            if flags & 0x02:  # SYN-ACK
                isn = seq + 1
                continue
            n = len(data) - tcp(data)[2]
            if n:
                self.frames.append((i, (seq - isn) & 0xFFFFFFFF, n))
        self.bytes = bytearray(sum(n for _, _, n in self.frames))
        for i, off, n in self.frames:
            data = records[i][3]
            self.bytes[off : off + n] = data[tcp(data)[2] :]
        self.packets = []  # (offset, seq, payload)
        at = 0
        while at + 4 <= len(self.bytes):
            n = int.from_bytes(self.bytes[at : at + 3], "little")
            self.packets.append((at, self.bytes[at + 3], bytes(self.bytes[at + 4 : at + 4 + n])))
            at += 4 + n

    def replies(self, classic):
        """Each reply after the login as its packets: one OK or ERR, or a resultset (count,
        definitions, their EOF in the `classic` protocol, rows, terminator). Sequence ids wrap
        inside a 400-row resultset, so replies are told apart by their shape."""
        out, rest = [], self.packets[2:]
        while rest:
            head = rest[0][2][0]
            if head in (0x00, 0xFF):
                n = 1
            else:
                n = 1 + head + (1 if classic else 0)
                while not (rest[n][2][0] == 0xFF or rest[n][2][0] == 0xFE and len(rest[n][2]) < 9):
                    n += 1
                n += 1
            out.append(rest[:n])
            rest = rest[n:]
        return out

    def frame_at(self, offset):
        """The index (in self.frames) of the data frame holding stream byte `offset`."""
        return next(k for k, (_, off, n) in enumerate(self.frames) if off <= offset < off + n)


def rows_of(reply, columns_defs_eof):
    """The row packets of a one-resultset reply: after the count, the definitions and (classic
    protocol) their EOF, up to the terminator."""
    columns = reply[0][2][0]
    first = 1 + columns + (1 if columns_defs_eof else 0)
    return reply[first:-1]


def seen_rows(rows, lost_from, lost_to):
    """Rows a decoder can count when stream bytes lost_from..lost_to are lost: those wholly
    before the loss, and those that start after it (found again by their packet boundaries)."""
    return sum(1 for off, _, p in rows if off + 4 + len(p) <= lost_from or off >= lost_to)


def visible_runs(stream, payload):
    """Contiguous stretches of the server's stream a snaplen leaving `payload` bytes of each
    frame's TCP payload shows: a frame shown whole joins the next one."""
    runs, joined = [], False
    for _, off, n in stream.frames:
        end = off + min(n, payload)
        if joined:
            runs[-1][1] = end
        else:
            runs.append([off, end])
        joined = n <= payload
    return runs


def snap_outcome(stream, reply, rows, payload):
    """At a snaplen: whether the reply's terminator shows whole (else its outcome is unknowable),
    and the rows a decoder can count. Those are the whole rows of a stretch read in sync from
    the reply's start, of a stretch showing three whole rows (they chain: packets found again),
    and of the stretch that shows the terminator whole (they chain to it)."""
    term = reply[-1]
    term_end = term[0] + 4 + len(term[2])
    known, count = False, 0
    for a, b in visible_runs(stream, payload):
        whole = [r for r in rows if a <= r[0] and r[0] + 4 + len(r[2]) <= b]
        ends = a <= term[0] and term_end <= b
        known |= ends
        if a <= reply[0][0] < b or len(whole) >= 3 or ends:
            count += len(whole)
    return known, count


def skipped(reply, lost_to):
    """Bytes between the end of a loss and the first of the reply's packets that starts after
    it: what a decoder skips to find the packets again."""
    return min(off for off, _, _ in reply if off >= lost_to) - lost_to


def thin(records, drop, trim=None):
    """The records without those at indexes `drop`, and those in `trim` without their first
    trim[index] payload bytes."""
    trim = trim or {}
    return [drop_front(r, trim[i]) if i in trim else r for i, r in enumerate(records) if i not in drop]


def main():
    src, dst = sys.argv[1], sys.argv[2]
    for name, classic in [("cli", True), ("deprecate_eof", False)]:
        header, records = read_pcap(os.path.join(src, name + ".pcap"))
        s = Stream(records)
        replies = s.replies(classic)
        big = [r for r in replies if len(r) > 100]
        print(f"{name}: {len(records)} frames, replies of {[len(r) for r in replies]} packets")
        write_pcap_gz(os.path.join(dst, name + ".pcap.gz"), header, records)
        for snaplen in SNAPLENS:
            write_pcap_gz(
                os.path.join(dst, f"{name}_snap{snaplen}.pcap.gz"), header, records, snaplen
            )
        mid_drop, end_drop, end_trim = set(), set(), {}
        for reply in big:
            rows = rows_of(reply, classic)
            first, last = s.frame_at(rows[0][0]), s.frame_at(reply[-1][0])
            # (a) three consecutive frames from the middle of the rows.
            middle = (first + last) // 2
            mid = [s.frames[k] for k in range(middle - 1, middle + 2)]
            lost = (mid[0][1], mid[-1][1] + mid[-1][2])
            mid_drop |= {i for i, _, _ in mid}
            # (b) everything from the middle up to the terminator: the frames before the one that
            # holds it, and that one's bytes before it.
            term = reply[-1][0]
            end_drop |= {s.frames[k][0] for k in range(middle, last)}
            cut = term - s.frames[last][1]
            if cut:
                end_trim[s.frames[last][0]] = cut
            to_end = (s.frames[middle][1], term)
            head = reply[-1][2][:1].hex()
            print(
                f"  reply of {len(rows)} rows ending 0x{head}: frames {s.frames[first][0] + 1}"
                f"..{s.frames[last][0] + 1}"
            )
            print(
                f"    lost_mid: frames {[i + 1 for i, _, _ in mid]} = bytes {lost[0]}..{lost[1]}"
                f" ({lost[1] - lost[0]}), rows seen {seen_rows(rows, *lost)},"
                f" skipped {skipped(reply, lost[1])}"
            )
            print(
                f"    lost_to_end: bytes {to_end[0]}..{to_end[1]} ({to_end[1] - to_end[0]}),"
                f" rows seen {seen_rows(rows, *to_end)}, skipped {skipped(reply, to_end[1])}"
            )
            for snaplen in SNAPLENS:
                # Ethernet, IPv4 and TCP with timestamps: 66 bytes before the payload.
                known, count = snap_outcome(s, reply, rows, snaplen - 66)
                outcome = "outcome known" if known else "terminator cut: outcome unknowable"
                print(f"    snap{snaplen}: {outcome}, rows seen {count}")
        write_pcap_gz(os.path.join(dst, name + "_lost_mid.pcap.gz"), header, thin(records, mid_drop))
        write_pcap_gz(
            os.path.join(dst, name + "_lost_to_end.pcap.gz"),
            header,
            thin(records, end_drop, end_trim),
        )


if __name__ == "__main__":
    main()
