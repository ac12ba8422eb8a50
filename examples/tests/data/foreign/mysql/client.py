#!/usr/bin/env python3
"""A raw-socket MySQL client that negotiates CLIENT_DEPRECATE_EOF (libmariadb, which the mariadb
CLI uses, does not): resultsets then end with an OK packet (header 0xFE) instead of an EOF.

Usage: client.py HOST PORT SQL...   (each SQL is sent as one COM_QUERY, then COM_QUIT)
The server runs with --skip-grant-tables, so the auth response is empty."""

import socket
import struct
import sys

PROTOCOL_41 = 0x200
SECURE_CONNECTION = 0x8000
PLUGIN_AUTH = 0x80000
DEPRECATE_EOF = 0x01000000
TRANSACTIONS = 0x2000
LONG_PASSWORD = 0x1
MULTI_RESULTS = 0x20000
CONNECT_WITH_DB = 0x8


class Conn:
    def __init__(self, host, port):
        self.s = socket.create_connection((host, port))
        self.buf = b""

    def read(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("server closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def packet(self):
        head = self.read(4)
        length = head[0] | head[1] << 8 | head[2] << 16
        return head[3], self.read(length)

    def send(self, payload, seq):
        self.s.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload)


def lenenc(b):
    first = b[0]
    if first < 0xFB:
        return first, 1
    width = {0xFC: 2, 0xFD: 3, 0xFE: 8}[first]
    return int.from_bytes(b[1 : 1 + width], "little"), 1 + width


def main():
    host, port, sqls = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    c = Conn(host, port)
    _, greeting = c.packet()
    assert greeting[0] == 10, greeting[:1]
    caps = (
        PROTOCOL_41
        | SECURE_CONNECTION
        | PLUGIN_AUTH
        | DEPRECATE_EOF
        | TRANSACTIONS
        | LONG_PASSWORD
        | MULTI_RESULTS
        | CONNECT_WITH_DB
    )
    hello = struct.pack("<IIB", caps, 1 << 24, 45) + bytes(23)
    hello += b"app\x00" + b"\x00" + b"shop\x00" + b"mysql_native_password\x00"
    c.send(hello, 1)
    while True:
        seq, p = c.packet()
        if p[0] == 0x00:
            break
        if p[0] == 0xFF:
            sys.exit("login failed: %r" % p)
        if p[0] == 0xFE:  # auth switch: an empty response will do without grants
            c.send(b"", seq + 1)
    for sql in sqls:
        c.send(b"\x03" + sql.encode(), 0)
        rows, status = 0, None
        while True:
            seq, p = c.packet()
            if p[0] == 0x00 or p[0] == 0xFF:
                status = "OK" if p[0] == 0 else "ERR %d" % struct.unpack("<H", p[1:3])
                break
            columns, _ = lenenc(p)
            for _ in range(columns):
                c.packet()
            while True:
                seq, p = c.packet()
                if p[0] == 0xFE and len(p) < 0xFFFFFF:
                    status = "OK (0xFE terminator)"
                    break
                if p[0] == 0xFF:
                    status = "ERR %d after rows" % struct.unpack("<H", p[1:3])
                    break
                rows += 1
            break
        print("%s -> %s, %d rows" % (sql[:50], status, rows), file=sys.stderr)
    c.send(b"\x01", 0)
    c.s.close()


if __name__ == "__main__":
    main()
