"""Appends to a recorded classic pcap (one HTTP exchange) a copy of its first packet (the SYN,
same initial sequence number) and of its first server packet with data (the response), 0.5 s
after the last packet, as captures that end with replays do."""
import struct, sys

src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
header, body = data[:24], data[24:]
records = []
while body:
    sec, usec, caplen, length = struct.unpack("<IIII", body[:16])
    records.append([sec, usec, body[16:16 + caplen], length])
    body = body[16 + caplen:]

def tcp(frame):
    # Linux cooked or Ethernet? tcpdump -i lo writes Ethernet (zeroed MACs).
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    return ip, ip[ihl:]

syn = next(r for r in records if tcp(r[2])[1][13] & 0x02)
server_port = struct.unpack("!H", tcp(syn[2])[1][2:4])[0]
response = next(r for r in records
                if struct.unpack("!H", tcp(r[2])[1][0:2])[0] == server_port
                and len(tcp(r[2])[0]) > (tcp(r[2])[0][0] & 0x0F) * 4 + (tcp(r[2])[1][12] >> 4) * 4)
last = records[-1]
t = last[0] * 1_000_000 + last[1] + 500_000
out = [header]
for r in records:
    out.append(struct.pack("<IIII", r[0], r[1], len(r[2]), r[3]) + r[2])
for i, r in enumerate([syn, response]):
    ts = t + i * 1000
    out.append(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(r[2]), r[3]) + r[2])
open(dst, "wb").write(b"".join(out))
