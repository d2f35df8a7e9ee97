#!/usr/bin/env bash
# What recording a trace and running a shadow policy cost the request path: gateway throughput
# with `--record-trace` on, with a shadow batcher (the default policy again, so every decision is
# compared), and with neither; three alternating rounds of each, 10 s each, MLP closed loop c=32,
# binary tensors (the per-request path at its fastest, where a per-request cost shows most).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo build --release --bin mark 2>/dev/null
MARK=./target/release/mark
[ -n "${CARGO_TARGET_DIR:-}" ] && MARK="$CARGO_TARGET_DIR/release/mark"
PORT=${BENCH_PORT:-18110}
TRACES=$(mktemp -d)
APORT=$((PORT + 1))
$MARK policy export-default "$TRACES/candidate.wasm" >/dev/null
one() {
  local shadow=0
  if [ "${1:-}" = "--shadow" ]; then shadow=1; shift; fi
  MARK_ADMIN_TOKEN=bench $MARK serve --model-repo models --listen 127.0.0.1:$PORT --no-grpc --no-profile \
    --admin-listen 127.0.0.1:$APORT "$@" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do curl -sf http://127.0.0.1:$PORT/v2/health/ready >/dev/null && break; sleep 0.2; done
  if [ $shadow = 1 ]; then
    curl -sf -H 'authorization: Bearer bench' -T "$TRACES/candidate.wasm" \
      "http://127.0.0.1:$APORT/admin/v1/policies/batcher?mode=shadow" >/dev/null
  fi
  $MARK bench --url http://127.0.0.1:$PORT --model mlp --mode closed --concurrency 32 --duration ${BENCH_SECONDS:-10} --binary --json 2>/dev/null
  kill $pid; wait $pid 2>/dev/null || true
}
OUT=$(mktemp)
for round in $(seq 1 ${BENCH_ROUNDS:-3}); do
  echo "off $(one)" >>"$OUT"
  echo "on $(one --record-trace "$TRACES/r$round")" >>"$OUT"
  echo "shadow $(one --shadow)" >>"$OUT"
done
du -sb "$TRACES"/r* | sed 's/^/trace bytes: /'
python3 - "$OUT" <<'PY'
import sys, json, statistics as st
rows = {"off": [], "on": [], "shadow": []}
for line in open(sys.argv[1]):
    k, j = line.split(" ", 1)
    rows[k].append(json.loads(j))
for k, v in rows.items():
    rates = [r["items_per_s"] for r in v]
    label = {"off": "neither", "on": "recording", "shadow": "shadow batcher"}[k]
    print(f"{label:<15} items/s", " ".join(f"{x:.0f}" for x in rates), f" median {st.median(rates):.0f}",
          f" p50 {st.median(r['p50_ms'] for r in v):.2f} ms", f" errors {sum(sum(r['errors'].values()) for r in v)}")
on = st.median(r["items_per_s"] for r in rows["on"])
off = st.median(r["items_per_s"] for r in rows["off"])
sh = st.median(r["items_per_s"] for r in rows["shadow"])
print(f"throughput with recording on = {100 * on / off:.1f}% of neither")
print(f"throughput with a shadow batcher = {100 * sh / off:.1f}% of neither")
PY
rm -rf "$TRACES"
