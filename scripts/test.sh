#!/usr/bin/env bash
# The whole test suite: setup, build (release: the end-to-end tests start the real binary),
# unit + end-to-end tests. With cargo-nextest (on the dev and CI machines) every test runs in its
# own process under the deadline in .config/nextest.toml; without it, `cargo test` runs under an
# overall deadline. Extra arguments go to the test runner (a filter, say).
set -euo pipefail
cd "$(dirname "$0")/.."
# a reused target dir past its budget is emptied before anything is installed (a full disk)
bash scripts/target-budget.sh || echo "target budget: not checked" >&2
bash scripts/setup.sh
# The operations page's browser test runs Debian's headless Chromium; the replicas test puts
# Debian's HAProxy in front of three gateways.
for pkg in chromium haproxy; do
  if ! command -v "$pkg" >/dev/null && [ ! -x "/usr/sbin/$pkg" ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -q "$pkg" >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "$pkg" >/dev/null; }
  fi
done
cargo build --release --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace "$@"
  cargo test --release --workspace --doc
else
  timeout --signal=KILL 3600 cargo test --release --workspace "$@"
fi
