#!/usr/bin/env python3
"""Records stray_crlf.pcap: one keep-alive HTTP/1.1 connection on loopback where bytes come
between messages in both directions.

A raw-socket server on 127.0.0.1:18080 answers seven requests; a raw-socket client sends them.
Both sides are written by hand so that exactly these extra bytes are on the wire:

  server: a CRLF after /one's body (same segment as the body), a CRLF after /two's body (its own
          segment, sent before the next request is), "xx\r\n" after /three's body (junk: not an
          empty line), "\r\n\r\n" after /four's body, nothing after the pipelined /five and /six,
          a bare LF after /seven's (HEAD) head.
  client: a CRLF before /two (its own segment, 20 ms before the request), a bare LF before
          /four (same segment), a CRLF between the pipelined /five and /six (one segment).

The server reads each request before it answers (ignoring empty lines before a request line,
as RFC 9112 section 2.2 asks), and the client waits for each response before the next request
(but /five and /six, pipelined), so every response starts after its request ended.

Run as root (tcpdump on lo): python3 gen_stray_crlf.py [OUTPUT]  (default: stray_crlf.pcap
next to this script). It prints the exchanges it made.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

PORT = 18080
HERE = os.path.dirname(os.path.abspath(__file__))

# What the server sends for each request target: (status line, headers, body, bytes after).
RESPONSES = {
    "/one": ("200 OK", [], b"hello", b"\r\n"),
    "/two": ("200 OK", [], b"world!", b"\r\n"),  # the CRLF goes in its own segment
    "/three": ("404 Not Found", [], b"no such thing", b"xx\r\n"),
    "/four": ("201 Created", [], b"", b"\r\n\r\n"),
    "/five": ("200 OK", [], b"5", b""),
    "/six": ("503 Service Unavailable", [("Retry-After", "1")], b"busy", b""),
    "/seven": ("200 OK", [], b"0123456789", b"\n"),  # HEAD: the length, no body
}
SEPARATE = {"/two"}


def read_request(conn, buf):
    """One request head (and its Content-Length body) from `buf` + the socket, skipping empty
    lines before its request line. Returns (method, target, rest of buf) or None at the end."""
    while True:
        stripped = buf.lstrip(b"\r\n")
        if b"\r\n\r\n" in stripped:
            head, rest = stripped.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            method, target, _ = lines[0].decode().split(" ")
            length = 0
            for line in lines[1:]:
                name, value = line.split(b":", 1)
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(rest) < length:
                rest += conn.recv(65536)
            return method, target, rest[length:]
        data = conn.recv(65536)
        if not data:
            return None
        buf += data


def serve(listener):
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    while True:
        got = read_request(conn, buf)
        if got is None:
            break
        method, target, buf = got
        status, headers, body, after = RESPONSES[target]
        head = f"HTTP/1.1 {status}\r\nServer: stray\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
        payload = head.encode() + (b"" if method == "HEAD" else body)
        if target in SEPARATE:
            conn.sendall(payload)
            time.sleep(0.01)
            conn.sendall(after)
        else:
            conn.sendall(payload + after)
    conn.close()


def request(method, target, body=b""):
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def read_response(sock, want):
    """Waits until `want` responses' worth of bytes came (good enough for this fixed script:
    it counts status lines and waits for their bodies by time)."""
    data = b""
    while data.count(b"HTTP/1.1 ") < want:
        data += sock.recv(65536)
    time.sleep(0.03)  # the rest of the body and any stray bytes after it


def client():
    sock = socket.create_connection(("127.0.0.1", PORT))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(0.2)

    def drain(want):
        try:
            read_response(sock, want)
        except socket.timeout:
            pass

    sock.sendall(request("GET", "/one"))
    drain(1)
    sock.sendall(b"\r\n")
    time.sleep(0.02)
    sock.sendall(request("GET", "/two"))
    drain(1)
    sock.sendall(request("GET", "/three"))
    drain(1)
    sock.sendall(b"\n" + request("POST", "/four", b"name=four"))
    drain(1)
    sock.sendall(request("GET", "/five") + b"\r\n" + request("GET", "/six"))
    drain(2)
    sock.sendall(request("HEAD", "/seven"))
    drain(1)
    sock.close()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "stray_crlf.pcap")
    dump = subprocess.Popen(
        # Immediate mode: packets are written as they come, not when a ring block fills or times
        # out (without it, packets still in the ring when tcpdump is stopped are lost).
        ["tcpdump", "-i", "lo", "-w", out, "-U", "--immediate-mode", "-Z", "root",
         f"tcp port {PORT}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    # Traffic sent before tcpdump listens is lost silently: wait for it to say so.
    for line in dump.stderr:
        if "listening on" in line:
            break
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    server = threading.Thread(target=serve, args=(listener,))
    server.start()
    client()
    server.join()
    listener.close()
    time.sleep(1)
    dump.send_signal(signal.SIGINT)
    print(dump.communicate(timeout=10)[1].strip())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
