#!/usr/bin/env bash
# Peak memory of `r2v serve` under the hostile probes of docs/security.md (a 1 GiB body to a
# worker route without a token, a million-item reference list, five 5000x5000 16-bit PNG
# references), each on a fresh server, next to that server's own peak after start-up.
# Usage: scripts/bench-hostile.sh [BEFORE_BINARY]
#   BEFORE_BINARY: an r2v built from an older commit, measured in the same run (e.g.
#   `git worktree add /tmp/old <commit> && cargo build --release -p r2v --manifest-path
#   /tmp/old/Cargo.toml --target-dir target/before`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p r2v >/dev/null 2>&1
builds=()
[ -n "${1:-}" ] && builds+=("before=$1")
builds+=("after=target/release/r2v")
python3 scripts/bench/hostile_probes.py "${builds[@]}"
