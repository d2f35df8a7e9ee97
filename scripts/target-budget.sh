#!/usr/bin/env bash
# Keeps the reused cargo target dir within a budget. Each change of a dependency or of the
# feature set leaves a whole generation of artifacts behind (several GiB), so a target dir reused
# for months (CI's, a developer's) fills the disk, and then even `pip install` fails. Past
# MARK_TARGET_BUDGET_GB (default 40) in the dir, or with under MARK_MIN_FREE_GB (default 20) free
# on its disk while the dir holds more than 2 GiB, the dir is emptied: the next build is cold.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${CARGO_TARGET_DIR:-$PWD/target}"
[ -d "$dir" ] || exit 0
budget_gb=${MARK_TARGET_BUDGET_GB:-40}
min_free_gb=${MARK_MIN_FREE_GB:-20}
gib=$((1024 * 1024))
used_kb=$(du -sk "$dir" 2>/dev/null | cut -f1)
free_kb=$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')
if [ "$used_kb" -gt $((budget_gb * gib)) ] \
  || { [ "$free_kb" -lt $((min_free_gb * gib)) ] && [ "$used_kb" -gt $((2 * gib)) ]; }; then
  echo "target dir $dir: $((used_kb / gib)) GiB, $((free_kb / gib)) GiB free on its disk" \
    "(budget ${budget_gb} GiB, ${min_free_gb} GiB free): emptied, the build is cold" >&2
  rm -rf "$dir"
fi
