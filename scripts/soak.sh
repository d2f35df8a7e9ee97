#!/usr/bin/env bash
# Soak: tests/tests/e2e/soak.rs for MINUTES (default 20): `mark serve --cloud local` with the embedded
# policies under load on two models, with hostile clients, hot swaps, fleet interruptions, a
# frozen worker and clients that hang up, all at once. Prints the figures and writes them to
# $SOAK_REPORT (default .mark/soak-report.md) for docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=${1:-20}
bash scripts/setup.sh >/dev/null
cargo build --release --workspace --bins
export MARK_SOAK_SECS=$((MIN * 60))
export MARK_SOAK_REPORT="${SOAK_REPORT:-$PWD/.mark/soak-report.md}"
cargo test --release -p mark-e2e --test e2e soak:: -- --nocapture
echo "report: $MARK_SOAK_REPORT"
