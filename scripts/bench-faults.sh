#!/usr/bin/env bash
# The Twitter-like day at 1x and 10x, both markets, with and without the cloud faults of
# examples/faults/first-week.toml (issue 31): cost, attainment, p99, launches, launch failures,
# refused launches, reclaim notices, and the longest time an instance was billed without serving;
# spot runs also with --spot-max-share 0.5 (spot spread over types), with and without the faults.
# The table of docs/simulation.md ("Cloud faults, priced"). Needs `cargo build --release --bin mark`.
set -euo pipefail
cd "$(dirname "$0")/.."
MARK=${MARK:-${CARGO_TARGET_DIR:-target}/release/mark}
DAY=csv:examples/workloads/twitter-like-day.csv
FAULTS=${FAULTS:-examples/faults/first-week.toml}
OUT=${OUT:-sim-out/faults}
for s in 1 10; do
  "$MARK" simulate --workload "$DAY" --load-scale "$s" --baseline mark-rs --spot both --quiet \
    --out "$OUT/clean-$s" >/dev/null
  "$MARK" simulate --workload "$DAY" --load-scale "$s" --baseline mark-rs --spot both --quiet \
    --cloud-faults "$FAULTS" --out "$OUT/faults-$s" >/dev/null
  "$MARK" simulate --workload "$DAY" --load-scale "$s" --baseline mark-rs --spot spot --quiet \
    --spot-max-share 0.5 --out "$OUT/spread-clean-$s" >/dev/null
  "$MARK" simulate --workload "$DAY" --load-scale "$s" --baseline mark-rs --spot spot --quiet \
    --spot-max-share 0.5 --cloud-faults "$FAULTS" --out "$OUT/spread-faults-$s" >/dev/null
done
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
print("| load | market | faults | cost $ | vs fault-free | attainment | p99 ms | launches | never booted | refused | notices | longest unserving (launch times) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for s in ("1", "10"):
    clean = {p["spot"]: p for p in json.load(open(f"{out}/clean-{s}/summary.json"))["policies"]}
    names = {"clean": "none", "faults": "first-week", "spread-clean": "none, spread 0.5",
             "spread-faults": "first-week, spread 0.5"}
    for d in ("clean", "faults", "spread-clean", "spread-faults"):
        for p in json.load(open(f"{out}/{d}-{s}/summary.json"))["policies"]:
            base = clean[p["spot"]]["total_cost"]
            print(f"| {s}x | {'spot' if p['spot'] else 'on-demand'} | {names[d]} "
                  f"| {p['total_cost']:.2f} | {100 * (p['total_cost'] / base - 1):+.1f}% | {p['attainment']:.4f} "
                  f"| {p['p99_ms']:.0f} | {p['launches']} | {p['launch_failures']} | {p['launch_errors']} "
                  f"| {p['notices']} | {p['max_unserving_billed_s']:.0f} s ({p['max_unserving_launch_times']:.2f}) |")
PY
