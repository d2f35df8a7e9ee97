#!/usr/bin/env bash
# Simulator speed and the cost tables of docs/simulation.md. Needs `cargo build --release --bin mark`.
set -euo pipefail
cd "$(dirname "$0")/.."
MARK=${MARK:-${CARGO_TARGET_DIR:-target}/release/mark}
DAY=csv:examples/workloads/twitter-like-day.csv
t() {
  python3 -c 'import subprocess, sys, time
s = time.time(); subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(f"  {time.time() - s:.1f} s:", " ".join(sys.argv[1:]))' "$@"
}
echo "speed (one strategy, 24 h, ~17.5 M requests):"
t "$MARK" simulate --workload "$DAY" --baseline mark-rs --spot spot --threads 1 --quiet --out /tmp/mark-bench-sim
t "$MARK" simulate --workload "$DAY" --baseline mark-rs --spot spot --threads 1 --quiet --native-policies --out /tmp/mark-bench-sim
t "$MARK" simulate --workload "$DAY" --baseline sagemaker --threads 1 --quiet --out /tmp/mark-bench-sim
echo "tables (docs/simulation.md; 1x and 10x load):"
run() { # OUT WORKLOAD SCALE
  "$MARK" simulate --workload "$2" --load-scale "$3" --quiet --out "sim-out/$1" >/dev/null
  echo "  sim-out/$1: $2 x$3"
}
run day "$DAY" 1
run day10 "$DAY" 10
run steps steps:1 1
run steps10 steps:1 10
run stress csv:examples/workloads/stress.csv 1
run stress10 csv:examples/workloads/stress.csv 10
run mmpp map:examples/workloads/mmpp-day:3600 1
run mmpp10 map:examples/workloads/mmpp-day:3600 10
echo "mark-rs against every baseline (x: times cheaper; the baseline's attainment in brackets):"
python3 scripts/sim_summary.py sim-out/day sim-out/day10 sim-out/steps sim-out/steps10 \
  sim-out/stress sim-out/stress10 sim-out/mmpp sim-out/mmpp10
