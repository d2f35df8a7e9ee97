#!/usr/bin/env bash
# Issue 32's "done when": mark-rs and MArk as released on the Twitter-like, steps and MMPP days
# at 1x and 10x, on demand and with spot (twelve mark-rs runs), with this build (EXTRA: more
# flags for its mark-rs, e.g. EXTRA=--slack-feedback) and, when MARK_BASE names another build
# (e.g. an older main), with that one too; prints each run's cost, attainment, p99 and
# launches, and the total over the twelve.
# Native policies (the functions the embedded WASM defaults run). Needs `cargo build --release`.
# usage: MARK_BASE=/path/to/old/mark bash scripts/bench-slack.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
MARK=${MARK:-${CARGO_TARGET_DIR:-target}/release/mark}
OUT=${1:-sim-out/slack}
DAY=csv:examples/workloads/twitter-like-day.csv
MMPP=map:examples/workloads/mmpp-day:3600
mkdir -p "$OUT"
run() { # BIN TAG NAME WORKLOAD SCALE
  local dir="$OUT/$2-$3"
  if [ -f "$dir/summary.json" ]; then return; fi
  # MArk as released is the same in both builds: run once, with this one
  local released=(--baseline mark-released ${EXTRA:-})
  [ "$2" = new ] || released=()
  "$1" simulate --workload "$4" --load-scale "$5" --baseline mark-rs "${released[@]}" \
    --spot both --native-policies --quiet --threads 1 --out "$dir" >/dev/null
  echo "  $dir"
}
bins=("$MARK:new")
[ -n "${MARK_BASE:-}" ] && bins+=("$MARK_BASE:base")
for b in "${bins[@]}"; do
  bin=${b%:*}; tag=${b##*:}
  run "$bin" "$tag" day "$DAY" 1 & run "$bin" "$tag" steps steps:1 1; wait
  run "$bin" "$tag" mmpp "$MMPP" 1 & run "$bin" "$tag" day10 "$DAY" 10; wait
  run "$bin" "$tag" steps10 steps:1 10 & run "$bin" "$tag" mmpp10 "$MMPP" 10; wait
done
python3 scripts/slack_table.py "$OUT"
