#!/usr/bin/env bash
# Gateway vs raw ONNX Runtime, same model, same executor threads, on this machine.
# Prints the markdown table that docs/benchmarks.md holds. ~2 minutes.
#   low load:   open-loop Poisson at 50 req/s, batch-1 requests -> added p50 latency
#   saturation: closed loop, many clients -> throughput vs raw ort at the batch size the gateway formed
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo build --release --bin mark 2>/dev/null
MARK=./target/release/mark
D=${BENCH_SECONDS:-10}
PORT=${BENCH_PORT:-18000}
OUT=$(mktemp -d)
$MARK serve --model-repo models --listen 127.0.0.1:$PORT >/dev/null 2>"$OUT/serve.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -sf http://127.0.0.1:$PORT/v2/health/ready >/dev/null && break; sleep 0.2; done
U=http://127.0.0.1:$PORT
run() { "$MARK" bench --json "$@" 2>/dev/null | tail -n +1 >>"$OUT/results.jsonl"; }
for m in mlp resnet18; do
  RATE=50; [ $m = resnet18 ] && RATE=10
  run --url $U --model $m --mode open --rate $RATE --duration $D --binary
  C=32; [ $m = resnet18 ] && C=16
  run --url $U --model $m --mode closed --concurrency $C --duration $D --binary
done
kill $PID; wait $PID 2>/dev/null || true
# raw ort with the same executor threads (1 session, the model's intra_threads), at batch 1 and at
# the mean batch the gateway formed at saturation
python3 - "$OUT/results.jsonl" > "$OUT/batches" <<'PY'
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    if " closed " in r["label"]:
        print(r["label"].split()[1], max(1, round(r["mean_batch"])))
PY
while read -r m b; do
  run --raw --model $m --batch-sizes "1,$b" --threads 1 --duration $D
done < "$OUT/batches"
python3 - "$OUT/results.jsonl" <<'PY'
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
def find(pred): return next(r for r in rows if pred(r["label"]))
print("| model | scenario | gateway | raw ort (same threads) | result |")
print("|---|---|---|---|---|")
for m in ["mlp","resnet18"]:
    lo = find(lambda l: l.startswith(f"gateway {m} open"))
    raw1 = find(lambda l: l.startswith(f"raw-ort {m} batch=1 "))
    print(f"| {m} | low load ({lo['label'].split()[3]} open loop, batch-1 requests) | p50 {lo['p50_ms']:.3f} ms, p99 {lo['p99_ms']:.3f} ms | p50 {raw1['p50_ms']:.3f} ms, p99 {raw1['p99_ms']:.3f} ms | added p50 **{lo['p50_ms']-raw1['p50_ms']:.3f} ms** |")
    sat = find(lambda l: l.startswith(f"gateway {m} closed"))
    b = max(1, round(sat["mean_batch"]))
    rawb = find(lambda l: l.startswith(f"raw-ort {m} batch={b} "))
    print(f"| {m} | saturation ({sat['label'].split()[3]} closed loop) | {sat['items_per_s']:.0f} items/s, mean batch {sat['mean_batch']:.1f}, p99 {sat['p99_ms']:.1f} ms, errors {sum(sat['errors'].values())} | {rawb['items_per_s']:.0f} items/s at batch {b} | **{100*sat['items_per_s']/rawb['items_per_s']:.0f}%** of raw |")
PY
