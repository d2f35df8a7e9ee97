#!/usr/bin/env bash
# Gateway vs raw ONNX Runtime, same model, same executor threads, on this machine, over the three
# request paths: REST with binary tensors, REST with JSON tensors, gRPC with raw contents.
# Prints the markdown table that docs/benchmarks.md holds. ~4 minutes (BENCH_SECONDS=10).
#   low load:   open-loop Poisson, batch-1 requests -> added p50 latency over raw ort at batch 1
#   saturation: closed loop, many clients -> throughput vs raw ort at the batch size the gateway formed
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo build --release --bin mark 2>/dev/null
MARK=./target/release/mark
[ -n "${CARGO_TARGET_DIR:-}" ] && MARK="$CARGO_TARGET_DIR/release/mark"
D=${BENCH_SECONDS:-10}
PORT=${BENCH_PORT:-18000}
GPORT=$((PORT + 1))
OUT=$(mktemp -d)
# the bundled models with on_deadline = "serve": saturation measures the request path's
# throughput, not how many requests SLO admission refuses
REPO="$OUT/repo"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_repo "$REPO" mlp resnet18
$MARK serve --model-repo "$REPO" --listen 127.0.0.1:$PORT --grpc-listen 127.0.0.1:$GPORT \
  >/dev/null 2>"$OUT/serve.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -sf http://127.0.0.1:$PORT/v2/health/ready >/dev/null && break; sleep 0.2; done
U=http://127.0.0.1:$PORT
G=http://127.0.0.1:$GPORT
run() { "$MARK" bench --json "$@" 2>/dev/null | tail -n +1 >>"$OUT/results.jsonl"; }
for m in mlp resnet18; do
  RATE=50; [ $m = resnet18 ] && RATE=10
  C=32; [ $m = resnet18 ] && C=16
  for form in "--binary" "" "--protocol grpc --grpc-url $G --binary"; do
    # shellcheck disable=SC2086
    run --url $U --model $m --mode open --rate $RATE --duration $D $form
    # shellcheck disable=SC2086
    run --url $U --model $m --mode closed --concurrency $C --duration $D $form
  done
done
kill $PID; wait $PID 2>/dev/null || true
# raw ort with the same executor threads (1 session, the model's intra_threads), at batch 1 and at
# the mean batch the gateway formed at saturation over each path
python3 - "$OUT/results.jsonl" > "$OUT/batches" <<'PY'
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
want={}
for r in rows:
    if " closed " in r["label"]:
        m=r["label"].split()[1]
        want.setdefault(m,{1}).add(max(1, round(r["mean_batch"])))
for m,bs in want.items():
    print(m, ",".join(str(b) for b in sorted(bs)))
PY
while read -r m b; do
  run --raw --model-repo "$REPO" --model $m --batch-sizes "$b" --threads 1 --duration $D
done < "$OUT/batches"
python3 - "$OUT/results.jsonl" <<'PY'
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
def find(pred): return next(r for r in rows if pred(r["label"]))
FORMS=[(" bin","REST binary"),("","REST JSON"),(" grpc-raw","gRPC raw")]
def form_of(label):
    for suffix,name in FORMS[::-1]:
        if suffix and label.endswith(suffix): return name
    return "REST JSON"
print("| model | path | low load: gateway p50 / p99 | added p50 over raw ort | saturation: gateway | vs raw ort at that batch |")
print("|---|---|---|---|---|---|")
for m in ["mlp","resnet18"]:
    raw1 = find(lambda l: l.startswith(f"raw-ort {m} batch=1 "))
    for suffix,name in FORMS:
        lo = find(lambda l: l.startswith(f"gateway {m} open") and form_of(l)==name)
        sat = find(lambda l: l.startswith(f"gateway {m} closed") and form_of(l)==name)
        b = max(1, round(sat["mean_batch"]))
        rawb = find(lambda l: l.startswith(f"raw-ort {m} batch={b} "))
        err = sum(sat['errors'].values()) + sum(lo['errors'].values())
        print(f"| {m} | {name} | {lo['p50_ms']:.3f} / {lo['p99_ms']:.3f} ms | **{lo['p50_ms']-raw1['p50_ms']:.3f} ms** | {sat['items_per_s']:.0f} items/s, batch {sat['mean_batch']:.1f}, p99 {sat['p99_ms']:.1f} ms, errors {err} | {rawb['items_per_s']:.0f} items/s: **{100*sat['items_per_s']/rawb['items_per_s']:.0f}%** |")
print()
print(f"raw ort batch 1: " + ", ".join(f"{m} p50 {find(lambda l: l.startswith(f'raw-ort {m} batch=1 '))['p50_ms']:.3f} ms" for m in ["mlp","resnet18"]))
PY
