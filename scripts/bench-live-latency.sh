#!/usr/bin/env bash
# Prices the live-latency rule (issue 25) in the simulator: a Twitter-like day on the shipped
# catalog without Lambda (so admission, not spill-over, meets the overflow) and a fleet capped at
# 6 instances, with hosts at the profiled speed and 1.5x slower all day; mark-rs admission planning
# with the worse of profile and live EWMA (--live-latency on) and with the profile alone (off).
# Prints the markdown table docs/simulation.md holds. ~40 s.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin mark 2>/dev/null
MARK=${CARGO_TARGET_DIR:-target}/release/mark
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
ln -s "$PWD/examples/profiles" "$T/profiles"
# the shipped catalog without its [lambda] table
python3 - examples/catalog-us-east-1.toml > "$T/catalog.toml" <<'PY'
import sys
skip = False
for line in open(sys.argv[1]):
    s = line.strip()
    if s.startswith("[lambda]"):
        skip = True
        continue
    if skip and s.startswith("["):
        skip = False
    if not skip:
        print(line, end="")
PY
echo "| hosts | live latency | attainment | p50 ms | p99 ms | cost \$ |"
echo "|---|---|---|---|---|---|"
for slow in 1 1.5; do
  for live in on off; do
    "$MARK" simulate --catalog "$T/catalog.toml" --baseline mark-rs --spot on-demand --quiet \
      --max-instances 6 --host-slowdown "0:$slow" --live-latency "$live" --out "$T/out" >/dev/null
    python3 - "$T/out/summary.json" "$slow" "$live" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
p = s["policies"][0]
print(f"| {sys.argv[2]}x slower | {sys.argv[3]} | {p['attainment']:.4f} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | {p['total_cost']:.2f} |")
PY
  done
done
