#!/usr/bin/env bash
# Load benchmark of the queue alone: submit and status polling against a real
# `r2v serve` on loopback with no workers, measured with wrk (closed loop, saturation), next to
# GET /health (the HTTP stack's floor) in the same run; then submits at a fixed offered rate
# with oha (-q, latency corrected for coordinated omission). Prints a Markdown table.
# Usage: scripts/bench-queue.sh [seconds per phase, default 10] [connections, default 32]
#          [sqlite|postgres|postgres2] [fixed rate, req/s, default 1000]
#   postgres: the request store on a Postgres cluster of Debian's packages that the script
#   starts in a temporary directory (as the postgres user when run as root) and stops.
#   postgres2: two nodes on that cluster behind nginx (docs/nginx-r2v.conf); every phase,
#   /health included, goes through nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
conns="${2:-32}"
backend="${3:-sqlite}"
rate="${4:-1000}"
command -v wrk >/dev/null || { echo "bench-queue: installing wrk" >&2; apt-get install -y -qq wrk >/dev/null; }
[ -x target/tools/bin/oha ] ||
  cargo install oha --version 1.16.0 --locked --root target/tools --quiet
[ "$backend" != postgres2 ] || [ -x /usr/sbin/nginx ] || scripts/ensure-deps.sh --clients
cargo build --release -p r2v >/dev/null 2>&1
data=$(mktemp -d)
. scripts/lib/bench.sh
store_args=()
if [ "$backend" != sqlite ]; then
  start_postgres
  store_args=(--database-url "$pg_url")
fi
start_serve d --workers 0 "${store_args[@]}"
base=$serve_base
key=$serve_key
if [ "$backend" = postgres2 ]; then
  start_serve d2 --workers 0 "${store_args[@]}"
  second=$serve_base
  lb=$(free_port)
  sed -e '/server 10\.0\.0\./d' -e "s|listen 80;|listen 127.0.0.1:$lb;|" \
    -e "s|upstream r2v_nodes {|upstream r2v_nodes {\n    server ${base#http://};\n    server ${second#http://};|" \
    docs/nginx-r2v.conf > "$data/r2v.conf"
  mkdir -p "$data/nginx"
  cat > "$data/nginx.conf" <<CONF
daemon off; worker_processes 1; pid $data/nginx.pid; error_log $data/nginx/error.log;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $data/nginx/body; proxy_temp_path $data/nginx/proxy;
  fastcgi_temp_path $data/nginx/fastcgi; uwsgi_temp_path $data/nginx/uwsgi; scgi_temp_path $data/nginx/scgi;
  include $data/r2v.conf; }
CONF
  /usr/sbin/nginx -p "$data/nginx" -c "$data/nginx.conf" &
  bench_pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$lb/health" >/dev/null && break; sleep 0.1; done
  base="http://127.0.0.1:$lb"
fi

cat >"$data/submit.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Key $key"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"prompt": "[0-2s] A lighthouse at dusk. [2-5s] Waves roll in.", "resolution": "720p"}'
LUA
id=$(curl -s -X POST "$base/wan/v2.6/reference-to-video/flash" -H "Authorization: Key $key" \
  -H 'content-type: application/json' -d '{"prompt": "status target"}' | sed 's/.*"request_id":"\([^"]*\)".*/\1/')
cat >"$data/status.lua" <<LUA
wrk.headers["Authorization"] = "Key $key"
LUA

run() { # name, url, script
  wrk -t2 -c"$conns" -d"${secs}s" --latency ${3:+-s "$3"} "$2" >"$data/$1.txt"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$data/$1.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$data/$1.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$data/$1.txt")
  echo "$1 $rps $p50 $p99"
}
# First, submits at a fixed offered rate into an empty queue: latency from when each request
# was due (oha -q with --latency-correction), not from when a busy connection got to send it.
target/tools/bin/oha -z "${secs}s" -q "$rate" -c "$conns" --latency-correction --no-tui \
  --output-format json -m POST -H "Authorization: Key $key" -H 'Content-Type: application/json' \
  -d '{"prompt": "[0-2s] A lighthouse at dusk. [2-5s] Waves roll in.", "resolution": "720p"}' \
  "$base/wan/v2.6/reference-to-video/flash" > "$data/fixed.json"
fixed=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
ok = r["statusCodeDistribution"].get("200", 0)
p = r["latencyPercentiles"]
print("%.0f %.2fms %.2fms %d" % (r["summary"]["requestsPerSec"], p["p50"] * 1e3, p["p99"] * 1e3, ok))
' "$data/fixed.json")
after_fixed=$(curl -s "$base/health" | sed 's/.*"queued":\([0-9]*\).*/\1/')
health=$(run health "$base/health")
submit=$(run submit "$base/wan/v2.6/reference-to-video/flash" "$data/submit.lua")
status=$(run status "$base/wan/v2.6/requests/$id/status" "$data/status.lua")
queued=$(curl -s "$base/health" | sed 's/.*"queued":\([0-9]*\).*/\1/')

echo "$backend store; wrk -t2 -c$conns -d${secs}s on $(nproc) cores; the queue held $queued requests at the end"
echo
echo "| phase | requests/s | p50 | p99 | throughput vs /health |"
echo "|---|---|---|---|---|"
read -r _ hrps hp50 hp99 <<<"$health"
for line in "$health" "$submit" "$status"; do
  read -r name rps p50 p99 <<<"$line"
  ratio=$(awk -v a="$rps" -v b="$hrps" 'BEGIN {printf "%.2f", a / b}')
  echo "| $name | $rps | $p50 | $p99 | ${ratio}× |"
done
read -r fixed_rps fixed_p50 fixed_p99 fixed_ok <<<"$fixed"
echo "| submit at $rate/s offered, first, queue 0 → $after_fixed (oha -q; $fixed_ok answered 200) | $fixed_rps | $fixed_p50 | $fixed_p99 | – |"
