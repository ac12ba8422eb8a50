#!/usr/bin/env bash
# meshsniff watching real servers live, scraped by a real Prometheus, on one machine.
#
#   driver ──HTTP/1.1──▶ nginx      ◀─┐
#   driver ──MySQL─────▶ mariadbd   ◀─┴─ meshsniff --interface lo (AF_PACKET) ──/metrics──▶ Prometheus
#
# Starts its own nginx, MariaDB server and Prometheus on loopback (own config files, ports and data
# directory under a temp dir; the system's services, if any, are neither used nor touched), starts
# `meshsniff --interface lo --listen ...` filtered to the nginx and MariaDB ports, drives a known
# mix of HTTP requests (some 3xx/404/500) and SQL statements (some failing) in a few rounds, lets
# Prometheus scrape every second, then asks Prometheus's HTTP API for the per-endpoint request
# rate, error ratio and p99 latency (histogram_quantile), checks that meshsniff_requests_total per
# (endpoint, outcome) equals exactly what the driver sent, and prints meshsniff's own table.
# Exits non-zero if any count differs.
#
# Installs Debian's nginx, mariadb-server and prometheus if missing (needs root or sudo; meshsniff
# needs CAP_NET_RAW, so it runs under sudo when not root). Ports on 127.0.0.1: base+80 (nginx),
# base+6 (MariaDB), base+90 (Prometheus), base+91 (meshsniff's /metrics); base is
# LIVEDEMO_BASE_PORT (default 19100). LIVEDEMO_ROUNDS (default 4) rounds of traffic, 2 s apart.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"

base=${LIVEDEMO_BASE_PORT:-19100}
rounds=${LIVEDEMO_ROUNDS:-4}
nginx_port=$((base + 80)) mysql_port=$((base + 6))
prom_addr=127.0.0.1:$((base + 90)) sniff_addr=127.0.0.1:$((base + 91))

say() { printf '\n== %s\n' "$*"; }

as_root=""
[ "$(id -u)" -eq 0 ] || as_root=sudo

missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v mariadbd >/dev/null || missing+=(mariadb-server)
command -v mariadb >/dev/null || missing+=(mariadb-client)
command -v prometheus >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian's ${missing[*]}"
  $as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  # The packages may start their own services (nginx :80, mariadb :3306, prometheus :9090,
  # node exporter :9100); none is on this demo's ports, so they are left alone.
fi
command -v python3 >/dev/null || { echo "python3 is needed to drive traffic and query Prometheus" >&2; exit 1; }

for port in $nginx_port $mysql_port ${prom_addr#*:} ${sniff_addr#*:}; do
  python3 - "$port" 2>/dev/null <<'PY' || { echo "127.0.0.1:$port is in use; pick other ports with LIVEDEMO_BASE_PORT" >&2; exit 1; }
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
PY
done

say "building meshsniff (release)"
cargo build --release --quiet -p examples --bin meshsniff
meshsniff=$PWD/target/release/meshsniff

started=$SECONDS
work=$(mktemp -d)
pids=()
sniff_pid=""
cleanup() {
  [ -z "$sniff_pid" ] || $as_root kill "$sniff_pid" 2>/dev/null || true
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
  for _ in $(seq 1 300); do
    grep -q "$2" "$work/$1.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$1 did not start:" >&2; cat "$work/$1.log" >&2; exit 1
}

await_port() { # name, port: waits until something accepts on 127.0.0.1:port
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$1 did not start:" >&2; cat "$work/$1.log" >&2; exit 1
}

say "nginx on 127.0.0.1:$nginx_port (own config, foreground)"
mkdir -p "$work/nginx" "$work/www/static"
head -c 524288 /dev/urandom >"$work/www/big.bin"
for i in $(seq 1 60); do echo "console.log('meshsniff live demo, line $i');"; done >"$work/www/static/app.js"
user_line=""
[ "$(id -u)" -ne 0 ] || user_line="user root;"
cat >"$work/nginx/nginx.conf" <<NGINX
$user_line
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 64; }
http {
  access_log $work/nginx/access.log;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  types { application/javascript js; text/css css; }
  default_type application/json;
  server {
    listen 127.0.0.1:$nginx_port;
    root $work/www;
    location = /healthz            { return 200 '{"status":"ok"}'; }
    location ~ "^/api/items/[0-9]{1,3}\$" { return 200 '{"id":1,"name":"widget"}'; }
    location = /api/orders         { return 201 '{"order":"created"}'; }
    location = /api/checkout       { return 500; }
    location /api/                 { return 404; }
    location = /old-page           { return 301 /new-page; }
    location /static/              { }
    location ~ "^/download/[0-9]+\$" { limit_rate 2m; default_type application/octet-stream; try_files /big.bin =404; }
  }
}
NGINX
start nginx nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf"
await_port nginx "$nginx_port"

say "MariaDB on 127.0.0.1:$mysql_port (own data directory, no TLS, no grant tables)"
as_user=()
[ "$(id -u)" -ne 0 ] || as_user=(--user=root)
mariadb-install-db --no-defaults --datadir="$work/db" "${as_user[@]}" --skip-test-db \
  --auth-root-authentication-method=normal >"$work/mariadb-install.log" 2>&1 \
  || { cat "$work/mariadb-install.log" >&2; exit 1; }
start mariadb mariadbd --no-defaults --datadir="$work/db" "${as_user[@]}" --socket="$work/mysqld.sock" \
  --pid-file="$work/mysqld.pid" --port="$mysql_port" --bind-address=127.0.0.1 --skip-name-resolve \
  --skip-grant-tables --skip-ssl --skip-log-bin --innodb-buffer-pool-size=32M
await mariadb "ready for connections"
sql=(mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$mysql_port" -u root --skip-ssl --batch --force)
"${sql[@]}" -e "CREATE DATABASE shop;
  CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(8,2))"

say "meshsniff on lo, ports $nginx_port and $mysql_port, metrics at http://$sniff_addr/metrics"
$as_root "$meshsniff" --interface lo --port "$nginx_port" --port "$mysql_port" --listen "$sniff_addr" \
  >"$work/meshsniff.out" 2>"$work/meshsniff.log" &
sniff_pid=$!
await meshsniff "capturing on"
cat "$work/meshsniff.log"

say "Prometheus on $prom_addr scraping meshsniff every 1s"
cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: meshsniff
    static_configs:
      - targets: ["$sniff_addr"]
YAML
start prometheus prometheus --config.file "$work/prometheus.yml" --storage.tsdb.path "$work/tsdb" \
  --web.listen-address "$prom_addr"
await prometheus "Server is ready to receive web requests"
# Prometheus hands targets to its scrape loop a few seconds after start: wait for the first
# scrape, so that the traffic's rounds land in different samples.
python3 - "$prom_addr" <<'PY'
import json, sys, time, urllib.parse, urllib.request

url = f"http://{sys.argv[1]}/api/v1/query?" + urllib.parse.urlencode({"query": 'up{job="meshsniff"} == 1'})
deadline = time.time() + 30
while not json.load(urllib.request.urlopen(url, timeout=5))["data"]["result"]:
    if time.time() > deadline:
        sys.exit("Prometheus did not scrape meshsniff")
    time.sleep(0.2)
PY

say "traffic: $rounds rounds, 2 s apart, of 33 HTTP requests and 20 SQL statements"
python3 - "127.0.0.1:$nginx_port" "$rounds" "$work/expected.json" "${sql[@]}" <<'PY'
import collections, http.client, json, random, subprocess, sys, time, uuid

host, port = sys.argv[1].rsplit(":", 1)
rounds, out, sql = int(sys.argv[2]), sys.argv[3], sys.argv[4:]
sent = collections.Counter()  # (protocol, endpoint label meshsniff should give, outcome) -> count

def http_round(r):
    rng = random.Random(r)
    # (method, path, the endpoint label meshsniff should give, the status nginx is set up to return)
    plan = [("GET", f"/api/items/{r * 100 + i}" + ("?fields=name" if i % 3 == 0 else ""),
             "GET /api/items/{id}", 200) for i in range(1, 9)]
    plan += [("GET", f"/api/items/{5000 + r * 10 + i}", "GET /api/items/{id}", 404) for i in range(2)]
    plan += [("GET", f"/api/users/{uuid.UUID(int=rng.getrandbits(128))}", "GET /api/users/{id}", 404)
             for _ in range(3)]
    plan += [("POST", "/api/orders", "POST /api/orders", 201)] * 4
    plan += [("POST", "/api/checkout", "POST /api/checkout", 500)] * 2  # nginx closes after a 500
    plan += [("GET", "/old-page", "GET /old-page", 301)]
    plan += [("GET", "/static/app.js", "GET /static/app.js", 200)] * 5
    plan += [("HEAD", "/static/app.js", "HEAD /static/app.js", 200)] * 2
    plan += [("GET", "/static/missing.css", "GET /static/missing.css", 404)]
    plan += [("GET", f"/download/{r}", "GET /download/{id}", 200)]  # 512 KiB at 2 MB/s
    plan += [("GET", "/healthz", "GET /healthz", 200)] * 4
    rng.shuffle(plan)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)  # keep-alive; reopens after a close
    for method, path, endpoint, status in plan:
        body = json.dumps({"item": r, "quantity": 1}) if method == "POST" else None
        headers = {"Content-Type": "application/json"} if body else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != status:
            sys.exit(f"nginx answered {method} {path} with {response.status}, not {status}")
        sent[("http", endpoint, f"{response.status // 100}xx")] += 1
    conn.close()
    return len(plan)

def sql_round(r):
    ids = [r * 100 + i for i in range(1, 6)]
    insert, select = "QUERY INSERT INTO shop.items VALUES (?)", "QUERY SELECT name, price FROM shop.items WHERE id = ?"
    plan = [(f"INSERT INTO shop.items VALUES ({i}, 'item {i}', {i % 50}.99)", insert, "ok") for i in ids]
    plan += [(f"INSERT INTO shop.items VALUES ({ids[0]}, 'again', 1.00)", insert, "error")]  # duplicate key
    plan += [(f"SELECT name, price FROM shop.items WHERE id = {i}", select, "ok") for i in ids + ids[:3]]
    plan += [(f"SELECT * FROM shop.orders WHERE id = {i}", "QUERY SELECT * FROM shop.orders WHERE id = ?",
              "error") for i in ids[:2]]  # no such table
    plan += [(f"UPDATE shop.items SET price = price + 1 WHERE id = {i}",
              "QUERY UPDATE shop.items SET price = price + ? WHERE id = ?", "ok") for i in ids[:3]]
    plan += [("SELECT SLEEP(0.2)", "QUERY SELECT SLEEP(?)", "ok")]
    # One client connection (mariadb --batch --force): its handshake is meshsniff's LOGIN record, the
    # statements follow in order, and the client's COM_QUIT (no response expected) ends it.
    run = subprocess.run(sql, input="".join(s + ";\n" for s, _, _ in plan), capture_output=True, text=True)
    errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR")]
    if len(errors) != sum(outcome == "error" for _, _, outcome in plan):
        sys.exit(f"the MariaDB client did not fail as planned:\n{run.stderr}")
    for _, endpoint, outcome in [(None, "LOGIN", "ok"), *plan, (None, "COM_QUIT", "ok")]:
        sent[("mysql", endpoint, outcome)] += 1
    return len(plan)

http_total = sql_total = 0
for r in range(1, rounds + 1):
    if r > 1:
        time.sleep(2)
    http_total += http_round(r)
    sql_total += sql_round(r)
    print(f"round {r}: {http_total} HTTP requests, {sql_total} SQL statements so far", flush=True)
with open(out, "w") as f:
    json.dump({"end": time.time(), "sent": [[*key, n] for key, n in sorted(sent.items())]}, f)
PY

say "asking Prometheus (after two more scrapes)"
status=0
python3 - "$prom_addr" "$work/expected.json" <<'PY' || status=$?
import json, math, sys, time, urllib.parse, urllib.request

prom, expected = sys.argv[1], json.load(open(sys.argv[2]))
sent = {(p, e, o): n for p, e, o, n in expected["sent"]}

def query(expr):
    url = f"http://{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]

def by(expr, *labels):
    return {tuple(s["metric"].get(l, "") for l in labels): float(s["value"][1]) for s in query(expr)}

# Two scrapes later than the last request, then up to 15 s more for the counts to settle.
deadline = time.time() + 30
while time.time() < deadline:
    last = query("timestamp(meshsniff_records_total)")
    if last and float(last[0]["value"][1]) >= expected["end"] + 2:
        break
    time.sleep(0.5)
else:
    sys.exit("Prometheus did not scrape meshsniff after the traffic")
COUNTS = "sum by (protocol, endpoint, outcome) (meshsniff_requests_total)"
deadline = time.time() + 15
while True:
    seen = by(COUNTS, "protocol", "endpoint", "outcome")
    if seen == {k: float(v) for k, v in sent.items()} or time.time() > deadline:
        break
    time.sleep(1)

print(f"\n$ {COUNTS}   (against what the driver sent)")
width = max(len(e) for _, e, _ in set(sent) | set(seen))
print(f"{'proto':6} {'endpoint':{width}} {'outcome':8} {'sent':>6} {'seen':>6}")
bad = 0
for key in sorted(set(sent) | set(seen)):
    n, got = sent.get(key, 0), seen.get(key, 0.0)
    bad += n != got
    print(f"{key[0]:6} {key[1]:{width}} {key[2]:8} {n:6d} {got:6.0f}{'' if n == got else '   <-- differs'}")

RATE = "sum by (protocol, endpoint) (rate(meshsniff_requests_total[1m]))"
ERRORS = ('sum by (protocol, endpoint) (rate(meshsniff_requests_total{outcome=~"4xx|5xx|error|missing"}[1m]))'
          f" / {RATE}")
P99 = ("histogram_quantile(0.99, sum by (le, protocol, endpoint) "
       "(rate(meshsniff_request_duration_seconds_bucket[1m])))")
rate, errors, p99 = (by(q, "protocol", "endpoint") for q in (RATE, ERRORS, P99))
print(f"\n$ {RATE}\n$ {ERRORS}\n$ {P99}")
print(f"{'proto':6} {'endpoint':{width}} {'req/s':>7} {'errors':>7} {'p99 ms':>9}")
for key in sorted(rate):
    q = p99.get(key, math.nan)
    print(f"{key[0]:6} {key[1]:{width}} {rate[key]:7.3f} {errors.get(key, 0.0):7.1%} "
          f"{'-' if math.isnan(q) else format(q * 1000, '.3f'):>9}")
print("(rates are per second averaged over the last minute; a series' first scrape counts as its start)")

totals = {name: by(f"sum({name})").get((), 0.0) for name in
          ["meshsniff_capture_packets_total", "meshsniff_capture_drops_total", "meshsniff_records_total"]}
print()
for name, value in totals.items():
    print(f"$ sum({name}) -> {value:.0f}")
if totals["meshsniff_capture_drops_total"]:
    print("warning: the kernel dropped packets (meshsniff_capture_drops_total > 0)")
if bad:
    sys.exit(f"\nFAILED: {bad} (endpoint, outcome) counts differ from what the driver sent")
print(f"\nOK: all {len(sent)} (endpoint, outcome) counts equal what the driver sent "
      f"({sum(sent.values())} requests)")
PY

say "meshsniff's own table (after SIGTERM)"
$as_root kill -TERM "$sniff_pid"
wait "$sniff_pid" || true
sniff_pid=""
cat "$work/meshsniff.out"
tail -n +2 "$work/meshsniff.log"
say "done in $((SECONDS - started)) s (Prometheus, meshsniff, nginx and MariaDB stop now)"
exit "$status"
