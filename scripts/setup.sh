#!/usr/bin/env bash
# Installs what MArk-rs needs beyond rustup/cargo and python3, idempotently, into .mark/:
# a Python venv with the pinned onnxruntime wheel (its libonnxruntime.so is what the gateway
# loads), the model generator's deps and the test clients; then generates the demo models.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.mark/venv
mkdir -p .mark
# Policies are WebAssembly components built for this target (by gateway/build.rs).
rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# The C policy example needs clang and wasm-ld (Debian packages).
if ! command -v clang-19 >/dev/null || ! command -v wasm-ld-19 >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -q clang-19 lld-19 >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q clang-19 lld-19 >/dev/null; }
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! cmp -s scripts/requirements.txt .mark/requirements.installed; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/requirements.txt
  # magika only for its pretrained model file; --no-deps keeps its onnxruntime pin out.
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps magika==1.0.3
  cp scripts/requirements.txt .mark/requirements.installed
fi
"$VENV/bin/python" scripts/gen_models.py models
# models whose outputs are not row-wise, for the tests of batchability (not served by the demo)
"$VENV/bin/python" scripts/gen_test_models.py .mark/test-models
