#!/usr/bin/env bash
# Quick start: install what is missing, build, and run the gateway's main job on embedded defaults:
# the bundled models on port 8000, MArk's default policies as the embedded WASM component, and the
# control loop on the `local` cloud (instances = `mark worker` processes, examples/catalog-local.toml).
# Extra arguments go to `mark serve`. Ctrl-C stops the gateway and terminates the demo's workers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --bin mark
STATE=.mark/cloud
FLEET=demo
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
stop_fleet() { stop_local_fleet "$STATE" "$FLEET"; }
trap stop_fleet EXIT
export MARK_ADMIN_TOKEN="${MARK_ADMIN_TOKEN:-demo}"
echo "operations page: http://127.0.0.1:8003/admin/#token=$MARK_ADMIN_TOKEN  (open it, then start the load step)"
echo "admin API: curl -s -H 'authorization: Bearer $MARK_ADMIN_TOKEN' localhost:8003/admin/v1/status"
echo "load step: ./target/release/mark bench --model mlp --mode open --rate 300 --duration 60"
./target/release/mark serve --model-repo models --listen "${MARK_LISTEN:-0.0.0.0:8000}" \
  --cloud local --catalog examples/catalog-local.toml --control-model mlp \
  --control-interval 10 --control-window 1 --max-instances 4 \
  --cloud-state "$STATE" --fleet "$FLEET" "$@"
