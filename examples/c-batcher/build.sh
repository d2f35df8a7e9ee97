#!/usr/bin/env bash
# Builds examples/c-batcher/c-batcher.wasm (a component) from batcher.c, against mark:policy@0.1.0
# (wit/0.1.0: the gateway still loads 0.1.0 components; the batcher is the same in 0.2.0).
# Needs clang and wasm-ld (Debian: clang-19 lld-19; scripts/setup.sh installs them) and wasm-tools
# (scripts/setup.sh puts it in .mark/venv/bin). Usage: build.sh [OUT.wasm]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
out="${1:-$here/c-batcher.wasm}"
CLANG=$(command -v clang-19 || command -v clang)
WASM_TOOLS=$(command -v wasm-tools || echo "$root/.mark/venv/bin/wasm-tools")
tmp=$(mktemp -d)
"$CLANG" --target=wasm32-unknown-unknown -O2 -nostdlib -fuse-ld="$(command -v wasm-ld-19 || command -v wasm-ld)" \
  -Wl,--no-entry -o "$tmp/core.wasm" "$here/batcher.c"
"$WASM_TOOLS" component embed "$root/wit/0.1.0" --world batcher-policy "$tmp/core.wasm" -o "$tmp/embedded.wasm"
"$WASM_TOOLS" component new "$tmp/embedded.wasm" -o "$out"
rm -rf "$tmp"
echo "wrote $out"
