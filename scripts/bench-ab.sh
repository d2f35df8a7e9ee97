#!/usr/bin/env bash
# A/B of two `mark` binaries on the request path: MLP, closed loop (32 clients, binary tensors),
# ROUNDS alternating rounds of SECONDS each, then the time to scrape /metrics (200 scrapes) on
# each after its load. Usage: scripts/bench-ab.sh BIN_A BIN_B [ROUNDS] [SECONDS]
#   e.g. git stash; cargo build --release --bin mark; cp target/release/mark /tmp/mark-a; ...
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1; B=$2; ROUNDS=${3:-3}; D=${4:-8}
OUT=$(mktemp -d)
REPO="$OUT/repo"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_repo "$REPO" mlp
PORT=${BENCH_PORT:-18300}
one() {
  local bin=$1 label=$2
  "$bin" serve --model-repo "$REPO" --listen 127.0.0.1:$PORT --no-grpc >/dev/null 2>"$OUT/$label.log" &
  local pid=$!
  for _ in $(seq 1 300); do curl -sf -m 2 http://127.0.0.1:$PORT/v2/health/ready >/dev/null && break; sleep 0.2; done
  local r
  r=$("$A" bench --json --url http://127.0.0.1:$PORT --model mlp --mode closed --concurrency 32 --binary --duration "$D" 2>/dev/null | tail -1)
  local t0 t1
  t0=$(date +%s%N)
  for _ in $(seq 1 200); do curl -s -m 5 http://127.0.0.1:$PORT/metrics >/dev/null; done
  t1=$(date +%s%N)
  kill $pid; wait $pid 2>/dev/null || true
  python3 - "$label" "$r" "$(( (t1 - t0) / 200000 ))" <<'PY'
import json, sys
r = json.loads(sys.argv[2])
print(f"| {sys.argv[1]} | {r['items_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {int(sys.argv[3]) / 1000:.2f} |")
PY
}
echo "| binary | answers/s | p50 ms | p99 ms | /metrics scrape ms (curl, 200x) |"
echo "|---|---|---|---|---|"
for _ in $(seq 1 "$ROUNDS"); do
  one "$A" A
  one "$B" B
done
