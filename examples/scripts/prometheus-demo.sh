#!/usr/bin/env bash
# Istio's "Collecting metrics for TCP services" task on one machine, without Kubernetes.
#
# sleep ──plain──▶ mxproxy(client) ══mTLS + istio-peer-exchange══▶ mxproxy(server) ──plain──▶ tcp-echo
#
# Starts the echo server, the two proxies and Prometheus on loopback (Prometheus scrapes both
# proxies' /metrics), drives some connections through the pair, then asks Prometheus's HTTP API
# for istio_tcp_connections_opened_total and istio_tcp_received_bytes_total and prints the series
# as the Prometheus console shows them.
#
# Installs Debian's prometheus package if it is missing (needs root or sudo). Ports: 127.0.0.1
# 19000 (echo), 19001/19091 (server proxy/metrics), 19002/19092 (client proxy/metrics), 19090
# (Prometheus); override with MXDEMO_BASE_PORT (default 19000).
set -euo pipefail
cd "$(dirname "$0")/../.."

base=${MXDEMO_BASE_PORT:-19000}
echo_addr=127.0.0.1:$base
server_addr=127.0.0.1:$((base + 1)) server_metrics=127.0.0.1:$((base + 91))
client_addr=127.0.0.1:$((base + 2)) client_metrics=127.0.0.1:$((base + 92))
prom_addr=127.0.0.1:$((base + 90))

say() { printf '\n== %s\n' "$*"; }

if ! command -v prometheus >/dev/null; then
  say "installing Debian's prometheus package"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq prometheus >/dev/null
  # The package starts its own service on :9090 and exporters; this demo runs its own instance.
fi
command -v python3 >/dev/null || { echo "python3 is needed to query Prometheus's API" >&2; exit 1; }

say "building mxproxy and mxecho (release)"
cargo build --release --quiet -p examples --bin mxproxy --bin mxecho
bin=target/release

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start() { # name, command...: runs it in the background, logging to $work/name.log
  local name=$1; shift
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}

await() { # name, text: waits until the log says it
  for _ in $(seq 1 200); do
    grep -q "$2" "$work/$1.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$1 did not start:" >&2; cat "$work/$1.log" >&2; exit 1
}

say "certificates from a throw-away mesh CA (SPIFFE identities as istiod would issue)"
$bin/mxproxy gen-certs "$work/certs" \
  sleep=spiffe://cluster.local/ns/default/sa/sleep \
  tcp-echo=spiffe://cluster.local/ns/echo/sa/tcp-echo

say "tcp-echo on $echo_addr, its sidecar on $server_addr (admits sleep), sleep's sidecar on $client_addr (expects tcp-echo)"
start tcp-echo $bin/mxecho serve --listen "$echo_addr"
await tcp-echo listening
tls() { echo --tls-cert "$work/certs/$1.pem" --tls-key "$work/certs/$1.key" --tls-ca "$work/certs/ca.pem"; }
# shellcheck disable=SC2046
start server-proxy $bin/mxproxy --role server --listen "$server_addr" --upstream "$echo_addr" \
  --metadata examples/data/mxproxy/tcp-echo.json $(tls tcp-echo) --metrics "$server_metrics" \
  --peer-identity spiffe://cluster.local/ns/default/sa/sleep
# shellcheck disable=SC2046
start client-proxy $bin/mxproxy --role client --listen "$client_addr" --upstream "$server_addr" \
  --metadata examples/data/mxproxy/sleep.json $(tls sleep) --metrics "$client_metrics" \
  --peer-identity spiffe://cluster.local/ns/echo/sa/tcp-echo
await server-proxy listening
await client-proxy listening
cat "$work/server-proxy.log" "$work/client-proxy.log"

say "Prometheus on $prom_addr scraping both sidecars every 2s"
cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 2s
scrape_configs:
  - job_name: istio-mesh
    static_configs:
      - targets: ["$client_metrics", "$server_metrics"]
YAML
start prometheus prometheus --config.file "$work/prometheus.yml" --storage.tsdb.path "$work/tsdb" \
  --web.listen-address "$prom_addr"
await prometheus "Server is ready to receive web requests"

say "traffic: 10 connections of 1 KiB and 3 of 64 KiB from sleep to tcp-echo, every byte checked"
$bin/mxecho send --to "$client_addr" --connections 10 --bytes 1024
$bin/mxecho send --to "$client_addr" --connections 3 --bytes 65536

say "asking Prometheus (the proxies report at close; waiting for the next scrapes)"
python3 - "$prom_addr" <<'PY'
import json, sys, time, urllib.parse, urllib.request

prom = sys.argv[1]

def query(expr):
    url = f"http://{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]

# Both reporters (source and destination) should show the 13 connections.
deadline = time.time() + 60
while time.time() < deadline:
    opened = query("istio_tcp_connections_opened_total")
    if len(opened) >= 2 and all(float(s["value"][1]) >= 13 for s in opened):
        break
    time.sleep(1)
else:
    sys.exit(f"Prometheus did not see the connections: {opened}")

for metric in ["istio_tcp_connections_opened_total", "istio_tcp_received_bytes_total"]:
    print(f"\n$ curl 'http://{prom}/api/v1/query?query={metric}'")
    for series in sorted(query(metric), key=lambda s: s["metric"].get("reporter", "")):
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        print(f"{name}{{{text}}} {series['value'][1]}")
PY
say "done (Prometheus and the proxies stop now)"
