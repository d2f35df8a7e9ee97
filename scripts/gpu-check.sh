#!/usr/bin/env bash
# The CUDA path on a real NVIDIA GPU, in one run (issue 10). On a machine with an NVIDIA GPU and
# driver (an AWS g4dn/g5/g6, say):
#   1. installs onnxruntime-gpu (the version the gateway's `ort` is built for) with the CUDA and
#      cuDNN runtime wheels it needs from PyPI into a venv (MARK_GPU_WHEELS=DIR: from wheels in
#      DIR, without the network);
#   2. serves the bundled models twice, with execution_provider "cpu" and "cuda", and checks that
#      the CUDA gateway really runs on CUDA (no silent fallback to the CPU) and that its answers
#      equal the CPU answers within |cuda - cpu| <= 1e-3 + 1e-2 * |cpu| per element, with the same
#      argmax per row (TF32 matmuls on Ampere and later move the last digits);
#   3. profiles each model on the GPU with `mark profile` and prints the curve, the throughput per
#      batch size and the catalog entry to paste (also written under OUT).
# Exit: 0 all checks passed; 1 a check failed (CUDA fell back to the CPU, answers differ);
# 2 no NVIDIA driver here.
# MARK_GPU_ORT_LIB=PATH skips step 1 and uses that libonnxruntime: the test suite runs the script
# so, with the CPU library, to prove that a fallback to the CPU fails the check.
#
# Usage: bash scripts/gpu-check.sh [OUT]       (OUT defaults to gpu-check-out/)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check-out}
ORT_VERSION=1.31.1
MODELS=${MARK_MODELS:-models}
MARK=${MARK_BIN:-${CARGO_TARGET_DIR:-target}/release/mark}
mkdir -p "$OUT"
say() { echo "gpu-check: $*"; }

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
elif [ -z "${MARK_GPU_ORT_LIB:-}" ]; then
  say "no nvidia-smi: this machine has no NVIDIA driver (nothing to check)"
  exit 2
fi

if [ -n "${MARK_GPU_ORT_LIB:-}" ]; then
  ORT_LIB=$MARK_GPU_ORT_LIB
else
  VENV=${MARK_GPU_VENV:-$HOME/.cache/mark-rs/gpu-venv}
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
  [ -n "${MARK_GPU_WHEELS:-}" ] && PIP+=(--no-index --find-links "$MARK_GPU_WHEELS")
  # the [cuda,cudnn] extras pull the nvidia-* runtime wheels this build of onnxruntime-gpu needs
  "${PIP[@]}" "onnxruntime-gpu[cuda,cudnn]==$ORT_VERSION"
  CAPI=$("$VENV/bin/python" -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))')
  ORT_LIB=$(ls "$CAPI"/libonnxruntime.so.* | head -n 1)
  # the CUDA provider library dlopens cudart, cublas, cudnn, ... from the nvidia wheels
  NV_LIBS=$("$VENV/bin/python" - <<'PY'
import glob, os, site
dirs = []
for sp in site.getsitepackages():
    dirs += sorted(glob.glob(os.path.join(sp, "nvidia", "*", "lib")))
print(":".join(dirs))
PY
)
  export LD_LIBRARY_PATH="$NV_LIBS:$CAPI${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
say "ONNX Runtime library: $ORT_LIB"
[ -x "$MARK" ] || cargo build --release --bin mark
[ -d "$MODELS" ] || { say "no model repository at $MODELS: run bash scripts/setup.sh"; exit 1; }

# two repositories over the same model files: one on the CPU, one on CUDA
repo() { # $1 dir, $2 provider
  rm -rf "$1"
  for m in "$MODELS"/*/; do
    m=${m%/}
    [ -f "$m/model.onnx" ] || continue
    n=$(basename "$m")
    mkdir -p "$1/$n"
    ln -s "$(cd "$m" && pwd)/model.onnx" "$1/$n/model.onnx"
    { grep -v '^execution_provider' "$m/config.toml" 2>/dev/null || true; echo "execution_provider = \"$2\""; } \
      >"$1/$n/config.toml"
  done
}
repo "$OUT/repo-cpu" cpu
repo "$OUT/repo-cuda" cuda

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
serve() { # $1 repo, $2 log: ports the kernel picks (no race with other processes for a port)
  "$MARK" serve --model-repo "$1" --listen 127.0.0.1:0 --no-grpc --admin-listen 127.0.0.1:0 \
    --admin-token gpu-check --ort-lib "$ORT_LIB" --no-profile >"$2" 2>&1 &
  PIDS+=($!)
}
addr_of() { # $1 log, $2 pid, $3 what the line says before the URL: the URL, once printed
  for _ in $(seq 600); do
    u=$(grep -o "$3 http://[0-9.:]*" "$1" 2>/dev/null | head -n 1 | awk '{print $NF}')
    [ -n "$u" ] && { echo "$u"; return 0; }
    kill -0 "$2" 2>/dev/null || { say "FAILED: mark serve exited (see $1)" >&2; return 1; }
    sleep 0.1
  done
  say "FAILED: no address in $1 within 60 s" >&2
  return 1
}
serve "$OUT/repo-cpu" "$OUT/serve-cpu.log"; CPU_PID=$!
serve "$OUT/repo-cuda" "$OUT/serve-cuda.log"; CUDA_PID=$!
CPU_URL=$(addr_of "$OUT/serve-cpu.log" "$CPU_PID" "listening on") || exit 1
CUDA_URL=$(addr_of "$OUT/serve-cuda.log" "$CUDA_PID" "listening on") || exit 1
CUDA_ADMIN_URL=$(addr_of "$OUT/serve-cuda.log" "$CUDA_PID" "admin API on") || exit 1

set +e
python3 scripts/gpu_compare.py "$CPU_URL" "$CUDA_URL" "$CUDA_ADMIN_URL" gpu-check | tee "$OUT/compare.txt"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ]; then
  say "FAILED: the CUDA gateway's check did not pass (see $OUT/compare.txt, $OUT/serve-cuda.log)"
  exit 1
fi

# the GPU's own curve for each model, and the catalog entry to paste
GPU=$(cut -d, -f1 "$OUT/gpu.txt" 2>/dev/null | head -n 1 | tr ' ' '-' || true)
for m in "$OUT"/repo-cuda/*/; do
  n=$(basename "$m")
  set +e
  "$MARK" profile --model-repo "$OUT/repo-cuda" --model "$n" --ort-lib "$ORT_LIB" \
    --catalog-entry "${MARK_GPU_TYPE:-${GPU:-gpu}}" | tee "$OUT/profile-$n.txt"
  rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" = 0 ] || { say "FAILED: mark profile of $n on CUDA exited $rc"; exit 1; }
  cp "$m/profile.toml" "$OUT/profile-$n.toml" 2>/dev/null || true
done
say "OK: CUDA serves every model with the CPU's answers; profiles in $OUT/profile-*.toml"
