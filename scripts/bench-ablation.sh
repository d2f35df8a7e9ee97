#!/usr/bin/env bash
# Issue 32's ablation: mark-rs on the Twitter-like, steps and MMPP days at 1x and 10x, on demand,
# with each source of planning headroom turned off in turn (`mark simulate --ablate NAME`), the
# older swap rule instead of churn that pays for itself (`churn`), and the feedback on slack
# added (`slack-feedback`: `--slack-feedback`); the table of docs/simulation.md "Spending the SLO". Native policies (the same functions the
# embedded WASM defaults run, ~5x faster to simulate). Needs `cargo build --release --bin mark`.
# usage: bash scripts/bench-ablation.sh [OUT_DIR] [ABLATIONS...]   (default: sim-out/ablation, all)
set -euo pipefail
cd "$(dirname "$0")/.."
MARK=${MARK:-${CARGO_TARGET_DIR:-target}/release/mark}
OUT=${1:-sim-out/ablation}
shift || true
ABL=("$@")
[ ${#ABL[@]} -gt 0 ] || ABL=(none margin slo-rule make-before-break emergency burst-sizing change-budget churn slack-feedback)
DAY=csv:examples/workloads/twitter-like-day.csv
MMPP=map:examples/workloads/mmpp-day:3600
mkdir -p "$OUT"
run() { # NAME WORKLOAD SCALE ABLATION
  local dir="$OUT/$1-$4"
  if [ -f "$dir/summary.json" ]; then return; fi
  local variant=(--ablate "$4")
  [ "$4" = slack-feedback ] && variant=(--slack-feedback)
  "$MARK" simulate --workload "$2" --load-scale "$3" --baseline mark-rs --spot on-demand \
    --native-policies "${variant[@]}" --quiet --out "$dir" >/dev/null
  echo "  $dir"
}
# two runs at a time (one per core)
for a in "${ABL[@]}"; do
  run day "$DAY" 1 "$a" &
  run steps steps:1 1 "$a"
  wait
  run mmpp "$MMPP" 1 "$a" &
  run day10 "$DAY" 10 "$a"
  wait
  run steps10 steps:1 10 "$a" &
  run mmpp10 "$MMPP" 10 "$a"
  wait
done
python3 scripts/ablation_table.py "$OUT"
