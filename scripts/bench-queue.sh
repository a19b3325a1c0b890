#!/usr/bin/env bash
# Load benchmark of the queue alone: submit and status polling against a real
# `r2v serve` on loopback with no workers, measured with wrk, next to GET /health
# (the HTTP stack's floor) in the same run. Prints a Markdown table for BENCHMARKS.md.
# Usage: scripts/bench-queue.sh [seconds per phase, default 10] [connections, default 32] [sqlite|postgres]
#   postgres: the request store on a Postgres cluster of Debian's packages that the script
#   starts in a temporary directory (as the postgres user when run as root) and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
conns="${2:-32}"
backend="${3:-sqlite}"
command -v wrk >/dev/null || { echo "bench-queue: installing wrk" >&2; apt-get install -y -qq wrk >/dev/null; }
cargo build --release -p r2v >/dev/null 2>&1
data=$(mktemp -d)
log="$data/serve.log"
store_args=()
pg=""
if [ "$backend" = postgres ]; then
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pg="$data/pg"
  mkdir -p "$pg"
  as=()
  if [ "$(id -u)" = 0 ]; then chmod 711 "$data"; chown -R postgres "$pg"; as=(runuser -u postgres --); fi
  "${as[@]}" "$bin/initdb" -D "$pg/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${as[@]}" "$bin/pg_ctl" -D "$pg/data" -l "$pg/log" -w \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $pg -c max_connections=200" start >/dev/null
  store_args=(--database-url "postgres://postgres@127.0.0.1:$port/postgres")
fi
target/release/r2v serve --listen 127.0.0.1:0 --data-dir "$data/d" --workers 0 "${store_args[@]}" >"$log" 2>/dev/null &
server=$!
stop() {
  kill $server 2>/dev/null
  if [ -n "$pg" ]; then "${as[@]}" "$bin/pg_ctl" -D "$pg/data" -m fast stop >/dev/null 2>&1 || true; fi
  rm -rf "$data"
}
trap stop EXIT
for _ in $(seq 100); do grep -q "listening on" "$log" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^r2v serve listening on //p' "$log")
key=$(sed -n 's/^created an API key[^:]*: //p' "$log")

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
