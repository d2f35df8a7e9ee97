#!/usr/bin/env bash
# Policy costs: per-call native vs WASM (`mark policy bench`), and end-to-end gateway throughput
# with the WASM batcher (embedded mark-default.wasm) vs the same policy linked natively.
# Three alternating rounds of each, 10 s each, MLP closed loop c=32, binary tensors.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo build --release --bin mark 2>/dev/null
MARK=./target/release/mark
$MARK policy bench
PORT=${BENCH_PORT:-18100}
one() {
  $MARK serve --model-repo models --listen 127.0.0.1:$PORT --no-grpc "$@" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do curl -sf http://127.0.0.1:$PORT/v2/health/ready >/dev/null && break; sleep 0.2; done
  $MARK bench --url http://127.0.0.1:$PORT --model mlp --mode closed --concurrency 32 --duration ${BENCH_SECONDS:-10} --binary --json 2>/dev/null
  kill $pid; wait $pid 2>/dev/null || true
}
OUT=$(mktemp)
for round in 1 2 3; do
  echo "wasm $(one)" >>"$OUT"
  echo "native $(one --native-policies)" >>"$OUT"
done
python3 - "$OUT" <<'PY'
import sys, json, statistics as st
rows = {"wasm": [], "native": []}
for line in open(sys.argv[1]):
    k, j = line.split(" ", 1)
    rows[k].append(json.loads(j))
for k, v in rows.items():
    rates = [r["items_per_s"] for r in v]
    print(f"{k:<7} items/s", " ".join(f"{x:.0f}" for x in rates), f" median {st.median(rates):.0f}",
          f" mean batch {st.mean(r['mean_batch'] for r in v):.2f}", f" errors {sum(sum(r['errors'].values()) for r in v)}")
w = st.median(r["items_per_s"] for r in rows["wasm"])
n = st.median(r["items_per_s"] for r in rows["native"])
print(f"WASM batcher end-to-end throughput = {100 * w / n:.1f}% of native")
PY
