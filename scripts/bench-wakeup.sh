#!/usr/bin/env bash
# Cross-node wake-up latency: how long after a submit the request is seen running, on one
# node (SQLite; its in-process worker is woken directly) and across two nodes on Postgres
# (submit and status stream on node A, the only worker on node B: nodes share no wake-ups,
# so B's worker finds the request by polling the store every 0.5 s and A's stream sees it
# start by polling every 0.2 s). Preview engine; prints a Markdown table for BENCHMARKS.md.
# Usage: scripts/bench-wakeup.sh [requests per setup, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-20}"
cargo build --release -p r2v >/dev/null 2>&1
data=$(mktemp -d)
. scripts/lib/bench.sh

measure() { # SUBMIT_BASE STREAM_BASE KEY: median, p90 and max ms from a submit to its stream's IN_PROGRESS
  python3 - "$1" "$2" "$3" "$n" <<'PY'
import json, statistics, sys, time, urllib.request
submit_base, stream_base, key, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
auth = {"Authorization": f"Key {key}", "Content-Type": "application/json"}
body = json.dumps({"prompt": "A lighthouse at dusk.", "resolution": "720p", "enable_audio": False}).encode()
started = []
for _ in range(n):
    t0 = time.monotonic()
    req = urllib.request.Request(f"{submit_base}/wan/v2.6/reference-to-video/flash", body, auth)
    rid = json.load(urllib.request.urlopen(req))["request_id"]
    stream = urllib.request.urlopen(urllib.request.Request(
        f"{stream_base}/wan/v2.6/requests/{rid}/status/stream", headers=auth))
    seen = None
    for line in stream:
        if not line.startswith(b"data: "):
            continue
        status = json.loads(line[6:])["status"]
        if status == "IN_PROGRESS" and seen is None:
            seen = time.monotonic() - t0
        if status == "COMPLETED":
            break
    started.append(seen if seen is not None else float("nan"))
q = statistics.quantiles(started, n=10, method="inclusive")
print(f"{statistics.median(started) * 1e3:.0f} {q[-1] * 1e3:.0f} {max(started) * 1e3:.0f}")
PY
}

start_serve one --workers 1 --x264-preset ultrafast
single=$(measure "$serve_base" "$serve_base" "$serve_key")
start_postgres
start_serve a --workers 0 --database-url "$pg_url"
a=$serve_base key=$serve_key
start_serve b --workers 1 --database-url "$pg_url" --x264-preset ultrafast
fleet=$(measure "$a" "$a" "$key")

echo "$n requests each, one at a time, on $(nproc) cores"
echo
echo "| setup | submit → IN_PROGRESS on the stream: median | p90 | max |"
echo "|---|---|---|---|"
read -r m p x <<<"$single"; echo "| one node, SQLite, in-process worker | $m ms | $p ms | $x ms |"
read -r m p x <<<"$fleet"; echo "| two nodes, Postgres: submit and stream on A, worker on B | $m ms | $p ms | $x ms |"
