#!/usr/bin/env bash
# Throughput of 1, 2 and 3 `mark serve` replicas behind HAProxy on this machine: closed-loop
# `mark bench` (binary tensors, mlp, 64 clients) through the load balancer, and one replica
# without it. Prints the markdown table docs/benchmarks.md holds. ~1 minute (BENCH_SECONDS=8).
# The replicas here serve on their own executors (no fleet) and share this machine's cores: the
# figures show what a replica costs in CPU, not how N machines scale (see docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$HAPROXY" ] || { echo "haproxy missing: apt-get install haproxy" >&2; exit 69; }
cargo build --release --bin mark 2>/dev/null
MARK=./target/release/mark
[ -n "${CARGO_TARGET_DIR:-}" ] && MARK="$CARGO_TARGET_DIR/release/mark"
D=${BENCH_SECONDS:-8}
OUT=$(mktemp -d)
REPO="$OUT/repo"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_repo "$REPO" mlp
PIDS=()
stop() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; PIDS=(); sleep 0.5; }
trap stop EXIT
bench() { "$MARK" bench --json --url "$1" --model mlp --mode closed --concurrency 64 --binary --duration "$D" 2>/dev/null | tail -1; }
echo "| replicas | path | answers/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|"
row() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
r = json.loads(sys.argv[3])
err = sum(r["errors"].values())
print(f"| {sys.argv[1]} | {sys.argv[2]} | {r['items_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {err} |")
PY
}
for n in 1 2 3; do
  servers=""
  for i in $(seq 1 $n); do
    "$MARK" serve --model-repo "$REPO" --listen 127.0.0.1:1910$i --no-grpc >/dev/null 2>"$OUT/r$i.log" &
    PIDS+=($!)
    servers+="  server r$i 127.0.0.1:1910$i check"$'\n'
  done
  for i in $(seq 1 $n); do
    for _ in $(seq 1 300); do curl -sf -m 2 http://127.0.0.1:1910$i/v2/health/ready >/dev/null && break; sleep 0.2; done
  done
  printf 'global\n  maxconn 4000\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\nfrontend fe\n  bind 127.0.0.1:19100\n  default_backend be\nbackend be\n  balance roundrobin\n  option httpchk GET /v2/health/ready\n%s' "$servers" > "$OUT/haproxy.cfg"
  "$HAPROXY" -db -f "$OUT/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
  PIDS+=($!)
  sleep 1
  if [ "$n" = 1 ]; then row 1 direct "$(bench http://127.0.0.1:19101)"; fi
  row "$n" HAProxy "$(bench http://127.0.0.1:19100)"
  stop
done
