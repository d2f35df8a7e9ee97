#!/usr/bin/env bash
# Quick start: install what is missing, build, and serve the bundled models on port 8000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --bin mark
exec ./target/release/mark serve --model-repo models --listen "${MARK_LISTEN:-0.0.0.0:8000}" "$@"
