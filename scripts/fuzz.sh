#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz + libFuzzer) for SECONDS each (default 60), two at a
# time, and prints the markdown table docs/reliability.md holds: executions, corpus, crashes.
# Needs nightly only here (never for the build): installs it and cargo-fuzz when missing.
# A crash leaves fuzz/artifacts/<target>/crash-*: copy it to fuzz/regressions/<target>/ so that
# tests/tests/e2e/fuzz_corpora.rs replays it on stable forever.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
PAR=${FUZZ_PARALLEL:-2}
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --locked
# the gateway's build script builds the default policies for wasm with the same toolchain
rustup target list --toolchain nightly --installed | grep -q wasm32-unknown-unknown \
  || rustup target add wasm32-unknown-unknown --toolchain nightly
# its own target dir: sanitizer builds never mix with the stable ones
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/mark-rs/fuzz-target}"
TARGETS=${FUZZ_TARGETS:-"v2_json v2_binary batch_wire workload catalog"}
cd fuzz
cargo +nightly fuzz build -O 2>&1 | tail -2
LOGS=$(mktemp -d)
run() {
  local t=$1
  mkdir -p "corpus/$t"
  cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    >"$LOGS/$t.log" 2>&1 || true
}
n=0
for t in $TARGETS; do
  run "$t" &
  n=$((n + 1))
  if [ "$n" -ge "$PAR" ]; then wait -n; n=$((n - 1)); fi
done
wait
echo "| target | seconds | executions | exec/s | corpus (files) | crashes |"
echo "|---|---|---|---|---|---|"
for t in $TARGETS; do
  runs=$(grep -o 'Done [0-9]* runs' "$LOGS/$t.log" | grep -o '[0-9]*' || echo "?")
  crashes=$(ls "artifacts/$t" 2>/dev/null | grep -c -E '^(crash|oom|timeout|leak)-' || true)
  files=$(ls "corpus/$t" | wc -l)
  rate=$( [ "$runs" != "?" ] && echo $((runs / SECS)) || echo "?")
  echo "| $t | $SECS | $runs | $rate | $files | $crashes |"
done
echo
echo "logs: $LOGS"
