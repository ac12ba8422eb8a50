#!/usr/bin/env python3
"""Writes what a MongoDB 3.0 shell session puts on the wire, as classic pcaps (Ethernet, IPv4, TCP
with exact seq/ack, MSS 1448), plus the cuts that start inside the connection, and a truth file
with each exchange's frames and times.

No MongoDB 3.0 can be installed here, so the bytes are built from what 3.0's C++ client and
server send (see README.md): every request has responseTo = -1 (MessagingPort::say's default in
3.0), commands are OP_QUERY on `db.$cmd` with numberToReturn -1, a find is an OP_QUERY on the
collection, `it` an OP_GET_MORE, and every answer an OP_REPLY (responseFlags AwaitCapable on
successes, QueryFailure with a `$err` document, CursorNotFound with no document). Shell numbers
are doubles. Deterministic: the same files on every run.

    python3 gen_mongo30_shell.py [OUT_DIR]
"""
import gzip
import json
import os
import struct
import sys

# ---- BSON (the subset used) ----------------------------------------------------------------


class Date:
    def __init__(self, ms):
        self.ms = ms


class I32(int):
    pass


class I64(int):
    pass


def bson_value(v):
    if isinstance(v, bool):
        return 0x08, b"\x01" if v else b"\x00"
    if isinstance(v, I32):
        return 0x10, struct.pack("<i", v)
    if isinstance(v, I64):
        return 0x12, struct.pack("<q", v)
    if isinstance(v, (int, float)):
        return 0x01, struct.pack("<d", float(v))
    if isinstance(v, str):
        b = v.encode()
        return 0x02, struct.pack("<i", len(b) + 1) + b + b"\x00"
    if isinstance(v, Date):
        return 0x09, struct.pack("<q", v.ms)
    if isinstance(v, dict):
        return 0x03, bson(v)
    if isinstance(v, list):
        return 0x04, bson({str(i): x for i, x in enumerate(v)})
    if v is None:
        return 0x0A, b""
    raise TypeError(v)


def bson(d):
    body = b""
    for k, v in d.items():
        kind, value = bson_value(v)
        body += bytes([kind]) + k.encode() + b"\x00" + value
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


# ---- MongoDB messages ----------------------------------------------------------------------

OP_REPLY, OP_QUERY, OP_GET_MORE = 1, 2004, 2005
NO_RESPONSE_TO = -1  # what the 3.0 shell puts in every request's responseTo
AWAIT_CAPABLE, QUERY_FAILURE, CURSOR_NOT_FOUND = 8, 2, 1


def message(request_id, response_to, opcode, body):
    return struct.pack("<iiii", 16 + len(body), request_id, response_to, opcode) + body


def cstring(s):
    return s.encode() + b"\x00"


def op_query(rid, ns, query, skip=0, to_return=0, flags=0):
    body = struct.pack("<I", flags) + cstring(ns) + struct.pack("<ii", skip, to_return) + bson(query)
    return message(rid, NO_RESPONSE_TO, OP_QUERY, body)


def op_get_more(rid, ns, cursor, to_return=0):
    body = struct.pack("<i", 0) + cstring(ns) + struct.pack("<iq", to_return, cursor)
    return message(rid, NO_RESPONSE_TO, OP_GET_MORE, body)


def op_reply(rid, to, docs, flags=AWAIT_CAPABLE, cursor=0, starting=0):
    body = struct.pack("<Iqii", flags, cursor, starting, len(docs)) + b"".join(bson(d) for d in docs)
    return message(rid, to, OP_REPLY, body)


# ---- TCP/IP framing ------------------------------------------------------------------------

CLIENT = (bytes([192, 0, 2, 10]), 50644)
SERVER = (bytes([192, 0, 2, 20]), 27017)
MSS = 1448
SYN, FIN, PSH, ACK = 0x02, 0x01, 0x08, 0x10


def ip_checksum(h):
    s = sum(struct.unpack("!10H", h))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return (~s) & 0xFFFF


def tcp_checksum(src, dst, tcp):
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    data = pseudo + tcp + (b"\x00" if len(tcp) % 2 else b"")
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s >> 16) + (s & 0xFFFF)
    return (~s) & 0xFFFF


class Capture:
    """The frames of one connection, each with its time (microseconds since the epoch, as the
    truth file gives them)."""

    def __init__(self, start_us):
        self.t = start_us
        self.frames = []  # (time_us, bytes, direction 'c'/'s', payload length)
        self.seq = {"c": 1_000_000, "s": 3_000_000}
        self.ip_id = {"c": 0x1200, "s": 0x5400}

    def at(self, us):
        self.t += us

    def frame(self, d, flags, payload=b""):
        (src, sport), (dst, dport) = (CLIENT, SERVER) if d == "c" else (SERVER, CLIENT)
        other = "s" if d == "c" else "c"
        ack = self.seq[other] if flags & ACK else 0
        tcp = struct.pack("!HHIIBBHHH", sport, dport, self.seq[d], ack, 0x50, flags, 65535, 0, 0) + payload
        tcp = tcp[:16] + struct.pack("!H", tcp_checksum(src, dst, tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), self.ip_id[d], 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
        self.ip_id[d] += 1
        eth = (b"\x02\x00\x00\x00\x00\x0a" + b"\x02\x00\x00\x00\x00\x14") if d == "s" else (
            b"\x02\x00\x00\x00\x00\x14" + b"\x02\x00\x00\x00\x00\x0a")
        self.frames.append((self.t, eth + b"\x08\x00" + ip + tcp, d, len(payload)))
        self.seq[d] = (self.seq[d] + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        return len(self.frames)  # 1-based frame number

    def send(self, d, data, gap_us=12):
        """`data` in MSS segments, PSH on the last; the peer ACKs every second one and the last
        (delayed ACKs). Returns (first frame, last frame, first time, last time)."""
        first = None
        other = "s" if d == "c" else "c"
        pieces = [data[i:i + MSS] for i in range(0, len(data), MSS)]
        for n, piece in enumerate(pieces):
            last = n == len(pieces) - 1
            if n:
                self.at(gap_us)
            f = self.frame(d, ACK | (PSH if last else 0), piece)
            if first is None:
                first, first_t = f, self.t
            if n % 2 == 1 and not last:
                self.at(3)
                self.frame(other, ACK)
        return first, f, first_t, self.t


# ---- the session ---------------------------------------------------------------------------

LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut "
         "labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco "
         "laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in "
         "voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat cupidatat "
         "non proident, sunt in culpa qui officia deserunt mollit anim id est laborum.")


def user(i):
    return {"_id": float(i), "name": "user%04d" % i, "group": float(i % 7),
            "email": "user%04d@example.org" % i, "bio": LOREM[: 290 + i % 60],
            "tags": ["t%d" % (i % 5), "shell"], "created": Date(1_420_070_400_000 + i * 60_000)}


START_US = 1_420_113_600_000_000  # 2015-01-01 12:00:00 UTC, MongoDB 3.0's days
LOCAL_TIME = Date(START_US // 1000 + 50)
DUP_ERRMSG = "E11000 duplicate key error index: test.users.$_id_  dup key: { : 1.0 }"
BAD_OP_ERR = "Can't canonicalize query: BadValue unknown operator: $bad"


def session():
    """The exchanges, in order: (label, request bytes, reply bytes or None)."""
    ids = iter(range(1, 1000))
    server_ids = iter(range(2001, 3000))
    out = []

    def command(label, db, cmd, reply):
        rid = next(ids)
        req = op_query(rid, db + ".$cmd", cmd, to_return=-1)
        out.append((label, rid, req, op_reply(next(server_ids), rid, [reply])))

    # The shell starting: `mongo 192.0.2.20/test`.
    command("whatsmyuri", "admin", {"whatsmyuri": 1.0}, {"you": "192.0.2.10:50644", "ok": 1.0})
    command("isMaster", "admin", {"isMaster": 1.0, "forShell": 1.0},
            {"ismaster": True, "maxBsonObjectSize": I32(16777216), "maxMessageSizeBytes": I32(48000000),
             "maxWriteBatchSize": I32(1000), "localTime": LOCAL_TIME, "maxWireVersion": I32(3),
             "minWireVersion": I32(0), "ok": 1.0})
    command("getLog", "admin", {"getLog": "startupWarnings"},
            {"totalLinesWritten": I32(0), "log": [], "ok": 1.0})
    command("replSetGetStatus", "admin", {"replSetGetStatus": 1.0, "forShell": 1.0},
            {"ok": 0.0, "errmsg": "not running with --replSet", "code": I32(76)})
    # > db.users.insert({_id: 1, name: "ada"})
    command("insert", "test", {"insert": "users", "documents": [{"_id": 1.0, "name": "ada"}], "ordered": True},
            {"ok": 1.0, "n": I32(1)})
    # > db.users.insert([...120 users...])
    command("insert", "test", {"insert": "users", "documents": [user(i) for i in range(2, 122)], "ordered": True},
            {"ok": 1.0, "n": I32(120)})
    # > db.users.insert({_id: 1, name: "bob"})
    command("insert", "test", {"insert": "users", "documents": [{"_id": 1.0, "name": "bob"}], "ordered": True},
            {"ok": 1.0, "n": I32(0), "writeErrors": [{"index": I32(0), "code": I32(11000), "errmsg": DUP_ERRMSG}]})
    # > db.users.find({group: 3})   (several results, no `ok`)
    rid = next(ids)
    group3 = [user(i) for i in range(2, 32) if i % 7 == 3]
    out.append(("find", rid, op_query(rid, "test.users", {"group": 3.0, "_id": {"$lt": 32.0}}),
                op_reply(next(server_ids), rid, group3)))
    # > db.users.find()   (the first batch: 101 documents, about 46 KB; a cursor stays open)
    rid = next(ids)
    cursor = 72_340_172_838_076_673
    everyone = [{"_id": 1.0, "name": "ada"}] + [user(i) for i in range(2, 122)]
    out.append(("find", rid, op_query(rid, "test.users", {}),
                op_reply(next(server_ids), rid, everyone[:101], cursor=cursor)))
    # > it
    rid = next(ids)
    out.append(("getMore", rid, op_get_more(rid, "test.users", cursor),
                op_reply(next(server_ids), rid, everyone[101:], starting=101)))
    # > var c = db.users.find().batchSize(2); c.next(); c.next()
    rid = next(ids)
    stale = 72_340_172_838_076_999
    out.append(("find", rid, op_query(rid, "test.users", {}, to_return=2),
                op_reply(next(server_ids), rid, everyone[:2], cursor=stale)))
    # (the cursor times out on the server) > c.next()
    rid = next(ids)
    out.append(("getMore", rid, op_get_more(rid, "test.users", stale, to_return=2),
                op_reply(next(server_ids), rid, [], flags=CURSOR_NOT_FOUND)))
    # > db.users.find({age: {$bad: 1}})
    rid = next(ids)
    out.append(("find", rid, op_query(rid, "test.users", {"age": {"$bad": 1.0}}),
                op_reply(next(server_ids), rid, [{"$err": BAD_OP_ERR, "code": I32(17287)}], flags=QUERY_FAILURE)))
    # > db.runCommand({noSuchCmd: 1})
    command("noSuchCmd", "test", {"noSuchCmd": 1.0},
            {"ok": 0.0, "errmsg": "no such cmd: noSuchCmd", "code": I32(59), "bad cmd": {"noSuchCmd": 1.0}})
    # > db.users.count()
    command("count", "test", {"count": "users", "query": {}}, {"n": 121.0, "ok": 1.0})
    return out


def build():
    cap = Capture(START_US)
    cap.frame("c", SYN)
    cap.at(40)
    cap.frame("s", SYN | ACK)
    cap.at(35)
    cap.frame("c", ACK)
    truth = []
    for n, (label, rid, req, reply) in enumerate(session()):
        cap.at(1_500_000 if n >= 4 else 900)  # the shell's four start-up commands come quickly, then a person types
        rf, rl, rft, rlt = cap.send("c", req)
        cap.at(150 + len(reply) // 40)  # the server's time, more for more documents
        sf, sl, sft, slt = cap.send("s", reply)
        cap.at(40)
        cap.frame("c", ACK)
        truth.append({"label": label, "request_id": rid, "req_bytes": len(req), "resp_bytes": len(reply),
                      "req_first_frame": rf, "req_frame": rl, "resp_first_frame": sf, "resp_last_frame": sl,
                      "req_first_us": rft, "req_last_us": rlt, "resp_first_us": sft, "resp_last_us": slt})
    # `exit`: the shell closes.
    cap.at(2_000_000)
    cap.frame("c", FIN | ACK)
    cap.at(60)
    cap.frame("s", FIN | ACK)
    cap.at(30)
    cap.frame("c", ACK)
    return cap.frames, truth


def write_pcap(path, frames):
    # gzip'd (the pipeline and tshark read it so), with no name or time in its header: the same
    # bytes on every run.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for t, data, _, _ in frames:
            f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(data), len(data)))
            f.write(data)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    frames, truth = build()
    by_label = lambda label, k=0: [t for t in truth if t["label"] == label][k]
    # Cut points (0-based index of the first frame kept).
    first_insert = by_label("insert")["req_first_frame"] - 1
    big_find = by_label("find", 1)
    mid_reply = (big_find["resp_first_frame"] + big_find["resp_last_frame"]) // 2 - 1
    while frames[mid_reply][2] != "s" or frames[mid_reply][3] == 0:
        mid_reply += 1
    big_insert = by_label("insert", 1)
    mid_request = (big_insert["req_first_frame"] + big_insert["req_frame"]) // 2 - 1
    while frames[mid_request][2] != "c" or frames[mid_request][3] == 0:
        mid_request += 1
    cuts = {
        "mongo30_shell.pcap.gz": 0,
        "mongo30_shell_from_request.pcap.gz": first_insert,
        "mongo30_shell_mid_reply.pcap.gz": mid_reply,
        "mongo30_shell_mid_request.pcap.gz": mid_request,
    }
    for name, skip in cuts.items():
        write_pcap(os.path.join(out, name), frames[skip:])
    doc = {
        "pcap": "mongo30_shell.pcap.gz",
        "generator": "gen_mongo30_shell.py (MongoDB 3.0 shell wire traffic, built; see README.md)",
        "client": "192.0.2.10:50644",
        "server": "192.0.2.20:27017",
        "frames": len(frames),
        "cuts": {name: skip for name, skip in cuts.items() if skip},
        "transactions": truth,
    }
    with open(os.path.join(out, "mongo30_shell.truth.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    for name, skip in cuts.items():
        print(name, "frames", len(frames) - skip, "first kept frame", skip + 1)


if __name__ == "__main__":
    main()
