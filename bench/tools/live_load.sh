#!/usr/bin/env bash
# meshsniff on a live interface under load, side by side with tshark and tcpdump (issue 15's
# benchmark). nginx on 127.0.0.1 answers `200 ok` (1 worker, keep-alive); `ab` drives it, once
# with keep-alive and once with a new connection per request. For each variant, the same ab run
# is repeated with nothing watching, with `meshsniff --interface lo --port P`, with
# `tshark -i lo -f 'tcp port P' -Y http.request`, and with `tcpdump -i lo -w /dev/null 'tcp port
# P'` (the capture floor), and for each watcher it reports: requests it reported, kernel drops,
# CPU seconds (user + system), requests per CPU-second, CPU per 10,000 requests/s, peak RSS.
#
# Usage: bench/tools/live_load.sh [REQUESTS] (default 200000 per run). Needs root (capture), and
# installs nginx, apache2-utils (ab), tshark and tcpdump when missing. Everything on loopback,
# bounded by REQUESTS; takes about a minute per 100,000 requests.
set -euo pipefail
cd "$(dirname "$0")/../.."

requests=${1:-200000}
port=${LIVE_LOAD_PORT:-19280}
concurrency=8

. bench/tools/live_common.sh
need nginx:nginx ab:apache2-utils tshark:tshark tcpdump:tcpdump
cargo build --release --quiet -p examples --bin meshsniff
meshsniff=$PWD/target/release/meshsniff
start_nginx "$port" 'location / { return 200 "ok\n"; }'

# ab's requests per second, and its count of completed requests.
run_ab() { # ab flags...
  ab "$@" -q -c "$concurrency" -n "$requests" "http://127.0.0.1:$port/item" >"$work/ab.out" 2>&1
  awk '/Requests per second/ {rps=$4} /Complete requests/ {n=$3} END {printf "%s %s\n", n, rps}' "$work/ab.out"
}

# Runs a watcher under /usr/bin/time while ab runs; prints its CPU seconds and peak RSS (KB).
# $1: name; $2: the line on stderr that says capture started; rest: the command.
watch_ab() {
  local name=$1 ready=$2; shift 2
  /usr/bin/time -f "%U %S %M" -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err" &
  local pid=$!
  wait_for_line "$work/$name.err" "$ready"
  sleep 0.5
  read -r done rps < <(run_ab $ab_flags)
  sleep 1
  pkill -INT -P "$pid" 2>/dev/null || true
  wait "$pid" || true
  # GNU time writes "Command terminated by signal 2" first when the watcher ends by a signal.
  read -r user sys rss < <(tail -1 "$work/$name.time")
  echo "$done $rps $user $sys $rss"
}

report() { # name, ab done, ab rps, reported, drops, user, sys, rss
  local name=$1 done=$2 rps=$3 reported=$4 drops=$5 user=$6 sys=$7 rss=$8
  awk -v n="$name" -v done="$done" -v rps="$rps" -v rep="$reported" -v drops="$drops" \
      -v u="$user" -v s="$sys" -v rss="$rss" 'BEGIN {
    cpu = u + s
    per = (cpu > 0) ? rep / cpu : 0
    per10k = (rps > 0) ? cpu / (done / rps) * 10000 / rps : 0
    printf "  %-10s %9.0f req/s %9d reported of %-9d %7s drops %6.2f CPU-s %10.0f req/CPU-s %6.3f CPU per 10k req/s %7.1f MB\n",
      n, rps, rep, done, drops, cpu, per, per10k, rss / 1024
  }'
}

for variant in keepalive newconn; do
  ab_flags=""
  [ "$variant" = keepalive ] && ab_flags="-k"
  echo "== $variant: ab $ab_flags -c $concurrency -n $requests, nginx 1 worker on 127.0.0.1:$port"
  read -r done rps < <(run_ab $ab_flags)
  printf "  %-10s %9.0f req/s (nothing watching)\n" none "$rps"

  read -r done rps user sys rss < <(watch_ab meshsniff "capturing on" \
    "$meshsniff" --interface lo --port "$port")
  reported=$(grep -o '[0-9]* transactions' "$work/meshsniff.out" | awk '{print $1}' || true)
  drops=$(grep -o '[0-9]* dropped by the kernel' "$work/meshsniff.err" | awk '{print $1}' || true)
  report meshsniff "$done" "$rps" "${reported:-0}" "${drops:-?}" "$user" "$sys" "$rss"

  read -r done rps user sys rss < <(watch_ab tshark "Capturing on" \
    tshark -i lo -f "tcp port $port" -Y http.request -T fields -e frame.number)
  reported=$(wc -l <"$work/tshark.out")
  drops=$( (grep -o '[0-9]* packets dropped' "$work/tshark.err" || true) | awk '{s+=$1} END {print s+0}')
  report tshark "$done" "$rps" "$reported" "$drops" "$user" "$sys" "$rss"

  read -r done rps user sys rss < <(watch_ab tcpdump "listening on" \
    tcpdump -i lo -w /dev/null "tcp port $port")
  drops=$(grep -o '[0-9]* packets dropped by kernel' "$work/tcpdump.err" | awk '{print $1}' || true)
  report tcpdump "$done" "$rps" "$done" "${drops:-?}" "$user" "$sys" "$rss"
done
