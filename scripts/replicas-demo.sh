#!/usr/bin/env bash
# Three `mark serve` replicas behind HAProxy on one local-cloud fleet, one controller at a time
# through a lease in DynamoDB (moto's server on loopback stands in for AWS). Prints the addresses;
# Ctrl-C stops everything and the demo's workers. Try, in another shell:
#   ./target/release/mark bench --url http://127.0.0.1:8080 --model mlp --mode open --rate 150 --duration 60
#   kill -9 <the leader's pid, printed below>   # another replica takes the lease within 10 s
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
for pkg in haproxy; do
  if ! command -v "$pkg" >/dev/null && [ ! -x "/usr/sbin/$pkg" ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -q "$pkg" >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "$pkg" >/dev/null; }
  fi
done
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
cargo build --release --bin mark
MARK=./target/release/mark
[ -n "${CARGO_TARGET_DIR:-}" ] && MARK="$CARGO_TARGET_DIR/release/mark"
OUT=$(mktemp -d)
STATE=.mark/cloud
FLEET=replicas-demo
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
export MARK_ADMIN_TOKEN="${MARK_ADMIN_TOKEN:-demo}"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_local_fleet "$STATE" "$FLEET"
}
trap cleanup EXIT
.mark/venv/bin/moto_server -H 127.0.0.1 -p 5600 >"$OUT/moto.log" 2>&1 &
PIDS+=($!)
cat >"$OUT/haproxy.cfg" <<CFG
global
  maxconn 4000
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch 1
  option http-server-close
frontend fe
  bind 127.0.0.1:8080
  default_backend be
backend be
  balance roundrobin
  option httpchk GET /v2/health/ready
  http-check expect status 200
  default-server inter 500ms fall 1 rise 2
  server r1 127.0.0.1:8101 check
  server r2 127.0.0.1:8102 check
  server r3 127.0.0.1:8103 check
# the lease table: moto checks a conditional write apart from applying it, on a thread per call,
# so two replicas' concurrent takeovers could both apply (DynamoDB never does): one at a time
frontend table
  bind 127.0.0.1:5601
  default_backend moto
backend moto
  option abortonclose
  timeout queue 2s
  server moto 127.0.0.1:5600 maxconn 1
CFG
"$HAPROXY" -db -f "$OUT/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
PIDS+=($!)
for i in 1 2 3; do
  "$MARK" serve --model-repo models --listen 127.0.0.1:810$i --no-grpc \
    --admin-listen 127.0.0.1:820$i --cloud local --catalog examples/catalog-local.toml \
    --control-model mlp --control-interval 10 --control-window 1 --max-instances 4 \
    --cloud-state "$STATE" --fleet "$FLEET" --replica-id "r$i" --lease-table mark-demo \
    --lease-endpoint http://127.0.0.1:5601 --lease-seconds 10 --drain-seconds 2 \
    2>"$OUT/r$i.log" >/dev/null &
  PIDS+=($!)
  echo "replica r$i: pid $!  data http://127.0.0.1:810$i  admin http://127.0.0.1:820$i/admin/#token=$MARK_ADMIN_TOKEN"
done
echo "load balancer: http://127.0.0.1:8080 (HAProxy; logs and config in $OUT)"
echo "who leads: for i in 1 2 3; do curl -s -H 'authorization: Bearer $MARK_ADMIN_TOKEN' 127.0.0.1:820\$i/admin/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"control\"][\"replica\"])'; done"
wait
