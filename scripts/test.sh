#!/usr/bin/env bash
# The whole test suite: setup, build (release: the end-to-end tests start the real binary),
# unit + end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --workspace --bins
cargo test --release --workspace "$@"
