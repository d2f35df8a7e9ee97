#!/usr/bin/env bash
# Keeps the reused cargo target dir within a budget. Each change of a dependency or of the
# feature set leaves a whole generation of artifacts behind (several GiB), so a target dir reused
# for months (CI's, a developer's) fills the disk, and then even `pip install` fails. Past
# MARK_TARGET_BUDGET_GB (default 40) in the dir, or with under MARK_MIN_FREE_GB (default 20) free
# on its disk while the dir holds more than 2 GiB, the dir's contents are removed: the next build
# is cold. Only a cargo target dir (its CACHEDIR.TAG) is ever touched; any doubt skips the check.
set -uo pipefail
cd "$(dirname "$0")/.."
skip() { echo "target budget: $*: not checked" >&2; exit 0; }
dir="${CARGO_TARGET_DIR:-$PWD/target}"
[ -d "$dir" ] || exit 0
budget_gb=${MARK_TARGET_BUDGET_GB:-40}
min_free_gb=${MARK_MIN_FREE_GB:-20}
[[ $budget_gb =~ ^[0-9]+$ && $min_free_gb =~ ^[0-9]+$ ]] \
  || skip "MARK_TARGET_BUDGET_GB / MARK_MIN_FREE_GB must be whole GiB"
real=$(realpath -e -- "$dir" 2>/dev/null) || skip "$dir unreadable"
case "$real" in
  / | "$HOME" | "$(pwd -P)" | "$(dirname "$(pwd -P)")") skip "$real is no target dir of its own" ;;
esac
grep -qs 'Signature: 8a477f597d28d172789f06886806bc55' "$real/CACHEDIR.TAG" \
  || skip "$real has no cargo CACHEDIR.TAG"
gib=$((1024 * 1024))
used_kb=$(du -sk -- "$real" 2>/dev/null | cut -f1) || true
free_kb=$(df -Pk -- "$real" 2>/dev/null | awk 'NR == 2 { print $4 }') || true
[[ ${used_kb:-} =~ ^[0-9]+$ && ${free_kb:-} =~ ^[0-9]+$ ]] || skip "du/df gave no sizes for $real"
if [ "$used_kb" -gt $((budget_gb * gib)) ] \
  || { [ "$free_kb" -lt $((min_free_gb * gib)) ] && [ "$used_kb" -gt $((2 * gib)) ]; }; then
  echo "target dir $real: $((used_kb / gib)) GiB, $((free_kb / gib)) GiB free on its disk" \
    "(budget ${budget_gb} GiB, ${min_free_gb} GiB free): emptied, the build is cold" >&2
  find "$real" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} + || true
fi
