"""The servers record.sh talks to: HTTPS on 18443, a PostgreSQL-like server on 15432, plain
HTTP on 18080 (200 to anything) and 18081 (500 to anything), all closing after one exchange
except 18080 (keep-alive, two requests)."""
import socket, ssl, sys, threading

work = sys.argv[1]

def serve(port, handle, wrap=None):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    def loop():
        while True:
            c, _ = s.accept()
            if wrap:
                c = wrap(c)
            handle(c)
            c.close()
    threading.Thread(target=loop, daemon=True).start()

def https(c):
    c.recv(4096)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nsecret\n")

def postgres(c):
    c.recv(4096)  # startup message
    c.sendall(b"R\x00\x00\x00\x08\x00\x00\x00\x00"
              b"S\x00\x00\x00\x19server_version\x0016.4\x00"
              b"Z\x00\x00\x00\x05I")
    c.recv(4096)  # a simple query
    c.sendall(b"T\x00\x00\x00\x1b\x00\x01one\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00"
              b"C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I")
    c.recv(4096)  # terminate

def http_keepalive(c):
    for _ in range(2):
        data = b""
        while b"\r\n\r\n" not in data:
            more = c.recv(4096)
            if not more:
                return
            data += more
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")

def http_500(c):
    c.recv(4096)
    c.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\nboom\n")

tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(f"{work}/cert.pem", f"{work}/key.pem")
serve(18443, https, lambda c: tls.wrap_socket(c, server_side=True))
serve(15432, postgres)
serve(18080, http_keepalive)
serve(18081, http_500)
threading.Event().wait()
