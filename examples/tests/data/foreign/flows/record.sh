#!/usr/bin/env bash
# Records the two captures of this directory on loopback (root, tcpdump, python3, openssl, curl):
#
# other_traffic.pcap: three connections on 127.0.0.1: curl over TLS to a python HTTPS server
#   (port 18443), a PostgreSQL-speaking exchange (startup message, authentication request,
#   parameter status; port 15432), and a plain HTTP connection whose second request is preceded by
#   9 junk bytes (port 18080).
# replayed_syn.pcap: one curl request to a python server answering 500 (port 18081), recorded,
#   then derived by replay.py: its SYN and its response segment appended again 0.5 s after the
#   last packet (what some public captures end with).
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 2 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
python3 servers.py "$work" &
sleep 1

tcpdump --immediate-mode -Z root -i lo -w "$work/other.pcap" -U 'tcp port 18443 or tcp port 15432 or tcp port 18080' 2>/dev/null &
dump=$!
sleep 1
curl -sk https://127.0.0.1:18443/secret >/dev/null
python3 clients.py
sleep 0.5
kill -INT $dump; wait $dump || true

tcpdump --immediate-mode -Z root -i lo -w "$work/replay.pcap" -U 'tcp port 18081' 2>/dev/null &
dump=$!
sleep 1
curl -s http://127.0.0.1:18081/boom >/dev/null
sleep 0.5
kill -INT $dump; wait $dump || true

cp "$work/other.pcap" other_traffic.pcap
python3 replay.py "$work/replay.pcap" replayed_syn.pcap
