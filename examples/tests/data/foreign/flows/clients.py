"""record.sh's PostgreSQL-like client (port 15432) and the HTTP client sending junk bytes before
its second request (port 18080)."""
import socket, time

pg = socket.create_connection(("127.0.0.1", 15432))
pg.sendall(b"\x00\x00\x00\x21\x00\x03\x00\x00user\x00app\x00database\x00shop\x00\x00")
pg.recv(4096)
pg.sendall(b"Q\x00\x00\x00\x0dSELECT 1\x00")
time.sleep(0.05)
pg.recv(4096)
pg.sendall(b"X\x00\x00\x00\x04")
pg.close()

h = socket.create_connection(("127.0.0.1", 18080))
h.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
time.sleep(0.05)
h.recv(4096)
h.sendall(b"\x01\x02junk!!GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
time.sleep(0.05)
h.recv(4096)
h.close()
time.sleep(0.1)
