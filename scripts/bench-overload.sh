#!/usr/bin/env bash
# Overload on resnet18 (SLO 300 ms): measured capacity (closed loop), then open-loop Poisson load
# at 1x, 2x and 5x of it, with SLO-aware admission (on_deadline = "reject", the default) and
# without it (on_deadline = "serve", the behaviour before issue 9). Prints the markdown table that
# docs/reliability.md holds: goodput = answers within the SLO per second. ~4 minutes.
# RUNS=5 LOADS=5 MODES=reject repeats the 5x run five times on a fresh gateway each (issue 25's
# check: answered p99 within the SLO and goodput >= 90% of capacity in every run), and prints the
# live batch-latency estimate the gateway planned with at the end of each run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo build --release --bin mark 2>/dev/null
MARK=${CARGO_TARGET_DIR:-target}/release/mark
D=${BENCH_SECONDS:-20}
PORT=${BENCH_PORT:-18100}
OUT=$(mktemp -d)
U=http://127.0.0.1:$PORT
start() { # on_deadline
  mkdir -p "$OUT/repo-$1/resnet18"
  ln -sf "$PWD/models/resnet18/model.onnx" "$OUT/repo-$1/resnet18/model.onnx"
  [ -f models/resnet18/profile.toml ] && cp models/resnet18/profile.toml "$OUT/repo-$1/resnet18/"
  printf 'max_batch_size = 8\nslo_ms = 300\nexecutors = 1\nintra_threads = 2\non_deadline = "%s"\n' "$1" \
    > "$OUT/repo-$1/resnet18/config.toml"
  $MARK serve --model-repo "$OUT/repo-$1" --listen 127.0.0.1:$PORT --no-grpc >/dev/null 2>"$OUT/serve-$1.log" &
  PID=$!
  for _ in $(seq 1 600); do curl -sf $U/v2/health/ready >/dev/null && break; sleep 0.2; done
  # the profile measured at start is kept for the next run
  [ -f models/resnet18/profile.toml ] || cp "$OUT/repo-$1/resnet18/profile.toml" models/resnet18/ 2>/dev/null || true
}
stop() { kill $PID 2>/dev/null; wait $PID 2>/dev/null || true; }
trap 'kill ${PID:-0} 2>/dev/null || true' EXIT
start reject
CAP=$($MARK bench --json --url $U --model resnet18 --mode closed --concurrency 8 --duration $D --binary \
  | python3 -c 'import json,sys; print(round(json.loads(sys.stdin.read())["items_per_s"], 1))')
stop
echo "capacity (closed loop, 8 clients): $CAP req/s" >&2
for run in $(seq 1 "${RUNS:-1}"); do
for mode in ${MODES:-reject serve}; do
  start $mode
  for x in ${LOADS:-1 2 5}; do
    RATE=$(python3 -c "print($CAP * $x)")
    $MARK bench --json --url $U --model resnet18 --mode open --rate "$RATE" --duration $D --binary \
      --concurrency 100000 --slo-ms 300 | sed "s/^/$mode $x /" >> "$OUT/results"
    # the live estimate admission planned with, beside the start-up profile (batch 1 and 8)
    curl -s --max-time 10 $U/metrics | grep '^mark_batch_latency_estimate_seconds' \
      | grep -E 'batch="(1|8)"' | sed "s/^/  run $run $mode ${x}x: /" >&2 || true
  done
  stop
done
done
python3 - "$OUT/results" "$CAP" <<'PY'
import json, sys
cap = float(sys.argv[2])
print(f"resnet18, SLO 300 ms, capacity {cap} req/s (closed loop); open-loop Poisson, {len(open(sys.argv[1]).readlines())} runs\n")
print("| on_deadline | load | offered req/s | goodput req/s (within SLO) | goodput / capacity | answered 200 | p50 / p99 of 200s (ms) | 503 shed | 504 expired |")
print("|---|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    mode, x, js = line.split(" ", 2)
    r = json.loads(js)
    offered = float(r["label"].split()[3].rstrip("/s"))
    e = {int(k): v for k, v in r["errors"].items()}
    print(f"| {mode} | {x}x | {offered:.0f} | {r['goodput_per_s']:.1f} | {r['goodput_per_s']/cap:.2f} | {r['ok']} | {r['p50_ms']:.0f} / {r['p99_ms']:.0f} | {e.get(503, 0)} | {e.get(504, 0)} |")
PY
