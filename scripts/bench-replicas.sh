#!/usr/bin/env bash
# Issue 28's "the simulator sees replicas": mark-rs on the Twitter-like day and the day of
# hourly steps (on demand), as one gateway and behind three replicas — with no faults; with wall
# clocks ±5 s apart and 5% of row publications, reads and lease calls lost; the same with the
# leader killed at noon; and with 30% lost and the kill. Prints cost, attainment, p99, launches,
# the replicas' lease acquisitions, seconds without a leader, the takeover and the demand the
# controller saw against the arrivals. Needs `cargo build --release`.
# usage: bash scripts/bench-replicas.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
MARK=${MARK:-${CARGO_TARGET_DIR:-target}/release/mark}
OUT=${1:-sim-out/replicas}
mkdir -p "$OUT"
i=0
for w in twitter-like steps; do
  for args in "" "--replicas 3" "--replicas 3 --replica-skew 5 --replica-loss 0.05" \
    "--replicas 3 --replica-skew 5 --replica-loss 0.05 --replica-kill-at 43200" \
    "--replicas 3 --replica-loss 0.3 --replica-kill-at 43200"; do
    i=$((i + 1))
    dir="$OUT/$i"
    # shellcheck disable=SC2086
    [ -f "$dir/summary.json" ] || "$MARK" simulate --workload "$w" --baseline mark-rs \
      --spot on-demand --quiet --threads 1 $args --out "$dir" >/dev/null
    python3 - "$dir/summary.json" "$w" "$args" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["policies"][0]
r = p.get("replicas") or {}
seen = r.get("demand_seen", 0) / max(r.get("arrivals", 1), 1) - 1 if r else 0.0
take = r.get("takeover_s")
print(f"{sys.argv[2]:<13} {sys.argv[3] or 'one gateway':<70} ${p['total_cost']:8.2f} att {p['attainment']:.4f} "
      f"p99 {p['p99_ms']:6.1f} ms launches {p['launches']:4d} | leases {r.get('acquisitions', '-')} "
      f"leaderless {r.get('leaderless_s', 0):5.1f} s takeover {'-' if take is None else f'{take:.1f} s'} "
      f"demand seen {100 * seen:+.2f}%")
PY
  done
done
