# Helpers sourced by the load benchmarks (scripts/bench-queue.sh, scripts/bench-wakeup.sh):
# a temporary directory, r2v serve nodes, a Postgres cluster of Debian's packages, and one
# cleanup for all of them on exit. Needs `data` set to a fresh directory before use.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

bench_pids=()
pg=""
bench_cleanup() {
  [ ${#bench_pids[@]} = 0 ] || kill "${bench_pids[@]}" 2>/dev/null
  if [ -n "$pg" ]; then "${as[@]}" "$bin/pg_ctl" -D "$pg/data" -m fast stop >/dev/null 2>&1 || true; fi
  rm -rf "$data"
}
trap bench_cleanup EXIT

# start_postgres: a cluster in $data/pg (as the postgres user when run as root, since initdb
# refuses root); sets pg_url.
start_postgres() {
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pg="$data/pg"
  mkdir -p "$pg"
  as=()
  if [ "$(id -u)" = 0 ]; then chmod 711 "$data"; chown -R postgres "$pg"; as=(runuser -u postgres --); fi
  "${as[@]}" "$bin/initdb" -D "$pg/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null
  local port; port=$(free_port)
  "${as[@]}" "$bin/pg_ctl" -D "$pg/data" -l "$pg/log" -w \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $pg -c max_connections=200" start >/dev/null
  pg_url="postgres://postgres@127.0.0.1:$port/postgres"
}

# start_serve NAME ARGS...: `r2v serve` with its data in $data/NAME; sets serve_base and, on
# a first start, serve_key.
start_serve() {
  local name=$1; shift
  local log="$data/$name.log"
  target/release/r2v serve --listen 127.0.0.1:0 --data-dir "$data/$name" "$@" >"$log" 2>/dev/null &
  bench_pids+=($!)
  for _ in $(seq 200); do grep -q "listening on" "$log" 2>/dev/null && break; sleep 0.1; done
  serve_base=$(sed -n 's/^r2v serve listening on //p' "$log")
  serve_key=$(sed -n 's/^created an API key[^:]*: //p' "$log")
}
