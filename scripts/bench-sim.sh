#!/usr/bin/env bash
# Simulator speed and the cost tables of docs/simulation.md. Needs `cargo build --release --bin mark`.
set -euo pipefail
cd "$(dirname "$0")/.."
MARK=${MARK:-./target/release/mark}
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
echo "tables:"
"$MARK" simulate --workload "$DAY" --quiet --out sim-out/day
"$MARK" simulate --workload csv:examples/workloads/stress.csv --quiet --out sim-out/stress
"$MARK" simulate --workload map:examples/workloads/mmpp-day:3600 --quiet --out sim-out/mmpp
