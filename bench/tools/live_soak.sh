#!/usr/bin/env bash
# A soak of `meshsniff --interface lo` under connection churn (issue 15): nginx on 127.0.0.1, `ab`
# opening a new connection per request (a mix of 200 and 404 paths) for SECONDS, meshsniff
# capturing with `--listen`. Every MINUTE it prints meshsniff's RSS (from /proc) and what
# /metrics says (records, open flows, evictions, kernel drops); at the end it stops meshsniff
# with SIGTERM and prints how every flow ended. RSS must stay flat and every flow must end
# closed or evicted.
#
# Usage: bench/tools/live_soak.sh [SECONDS] (default 600). Needs root; installs nginx and
# apache2-utils when missing. ab runs with -c 2 so the machine's other core stays usable.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-600}
port=${LIVE_SOAK_PORT:-19290}
metrics=127.0.0.1:$((port + 1))

. bench/tools/live_common.sh
need nginx:nginx ab:apache2-utils curl:curl
cargo build --release --quiet -p examples --bin meshsniff
start_nginx "$port" 'location /api/ { return 200 "ok\n"; } location / { return 404; }'

target/release/meshsniff --interface lo --port "$port" --listen "$metrics" \
  >"$work/table.out" 2>"$work/meshsniff.err" &
sniffer=$!
pids+=($sniffer)
wait_for_line "$work/meshsniff.err" "capturing on"

metric() { # name: its value in the exposition
  curl -s "http://$metrics/metrics" | awk -v m="$1" '$1 == m {print $2}'
}
sample() {
  printf "%6ss  RSS %6s KB  records %9s  flows open %6s  evicted(idle) %6s  drops %s\n" \
    "$1" "$(awk '/VmRSS/ {print $2}' "/proc/$sniffer/status")" \
    "$(metric meshsniff_records_total)" "$(metric meshsniff_flows_open)" \
    "$(metric 'meshsniff_flows_evicted_total{cause="idle"}')" \
    "$(metric meshsniff_capture_drops_total)"
}

# Two churning clients on different paths: ids are templated, so the series stay few.
ab -q -c 1 -t "$seconds" -n 100000000 "http://127.0.0.1:$port/api/items/42" >"$work/ab1.out" 2>&1 &
ab1=$!
ab -q -c 1 -t "$seconds" -n 100000000 "http://127.0.0.1:$port/nope" >"$work/ab2.out" 2>&1 &
ab2=$!
pids+=($ab1 $ab2)
started=$(date +%s)
sample 0
while kill -0 "$ab1" 2>/dev/null || kill -0 "$ab2" 2>/dev/null; do
  sleep "${MINUTE:-60}"
  sample $(( $(date +%s) - started ))
done
sent=$(awk '/Complete requests/ {s+=$3} END {print s}' "$work/ab1.out" "$work/ab2.out")
sleep 2
sample end
kill -TERM "$sniffer"
wait "$sniffer" || true
echo "ab sent $sent requests"
grep -E "transactions|evicted" "$work/table.out" || true
tail -1 "$work/meshsniff.err"
