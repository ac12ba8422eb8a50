# Sourced by live_load.sh and live_soak.sh: tools installed when missing, a work directory
# removed on exit with every process started, and a private nginx on 127.0.0.1.

# need COMMAND:PACKAGE...: installs Debian packages whose command is missing.
need() {
  local tool
  for tool in "$@"; do
    command -v "${tool%%:*}" >/dev/null ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${tool#*:}" >/dev/null
  done
}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# start_nginx PORT LOCATIONS: one worker on 127.0.0.1:PORT serving the given location blocks,
# no access log, keep-alive unbounded; returns once it accepts connections.
start_nginx() {
  local port=$1 locations=$2
  cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
user root;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/body;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port;
    $locations
  }
}
CONF
  nginx -c "$work/nginx.conf" &
  pids+=($!)
  for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return
    sleep 0.1
  done
  echo "nginx did not start on 127.0.0.1:$port" >&2
  return 1
}

# wait_for_line FILE TEXT: waits (up to 10 s) until FILE has a line containing TEXT.
wait_for_line() {
  for _ in $(seq 100); do
    grep -q "$2" "$1" 2>/dev/null && return
    sleep 0.1
  done
}
