#!/usr/bin/env bash
# Many models, one fleet (issue 27): two models with traffic of different shapes on the shipped
# catalog, one mark-rs fleet for their mix against one mark-rs fleet per model (and SageMaker, an
# endpoint per model and its multi-model endpoint), with the embedded WASM policies and the
# native ones; each model at its own config's SLO; the same pair at
# 0.1x; and scale to zero (--min-instances 0) on a trickle. The table of docs/simulation.md
# ("Many models, one fleet"). Needs `cargo build --release --bin mark`.
set -euo pipefail
cd "$(dirname "$0")/.."
MARK=${MARK:-${CARGO_TARGET_DIR:-target}/release/mark}
OUT=${OUT:-sim-out/models}
run() { # name, flags...
  local name=$1; shift
  "$MARK" simulate --spot on-demand --quiet --out "$OUT/$name" "$@" >/dev/null
}
PAIR_A=(--workload resnet18=twitter-like --workload magika=steps:1)
PAIR_B=(--workload mlp=twitter-like --workload resnet18=steps:1)
BASE=(--baseline mark-rs --baseline mark-rs-per-model --baseline sagemaker --baseline sagemaker-mme)
run a-wasm "${PAIR_A[@]}" "${BASE[@]}"
run a-native "${PAIR_A[@]}" --baseline mark-rs --baseline mark-rs-per-model --native-policies
run b-wasm "${PAIR_B[@]}" --baseline mark-rs --baseline mark-rs-per-model
run a-0.1 "${PAIR_A[@]}" --baseline mark-rs --baseline mark-rs-per-model --load-scale 0.1
run a-0.003 "${PAIR_A[@]}" --baseline mark-rs --baseline lambda-only --load-scale 0.003
run a-0.003-zero "${PAIR_A[@]}" --baseline mark-rs --load-scale 0.003 --min-instances 0
# each model held to its own config's SLO and largest batch (models/*/config.toml)
CFG_A=(--model-slo magika=100 --model-max-batch resnet18=8)
CFG_B=(--model-slo mlp=50 --model-max-batch mlp=64 --model-max-batch resnet18=8)
run a-cfg "${PAIR_A[@]}" "${CFG_A[@]}" --baseline mark-rs --baseline mark-rs-per-model
run b-cfg "${PAIR_B[@]}" "${CFG_B[@]}" --baseline mark-rs --baseline mark-rs-per-model
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = [
    ("a-wasm", "resnet18 twitter-like + magika steps, 1x, WASM"),
    ("a-native", "the same, native policies"),
    ("b-wasm", "mlp twitter-like + resnet18 steps, 1x, WASM"),
    ("a-0.1", "resnet18 + magika at 0.1x, WASM"),
    ("a-0.003", "resnet18 + magika at 0.003x, WASM"),
    ("a-0.003-zero", "the same, --min-instances 0"),
    ("a-cfg", "resnet18 + magika, 1x, each its config's SLO (300 / 100 ms), WASM"),
    ("b-cfg", "mlp + resnet18, 1x, each its config's SLO (50 / 300 ms), WASM"),
]
print("| day | policy | cost $ | vs a fleet per model | attainment (per model) | p99 ms (per model) | launches | Lambda share | time at zero |")
print("|---|---|---|---|---|---|---|---|---|")
for d, label in rows:
    ps = json.load(open(f"{out}/{d}/summary.json"))["policies"]
    apart = next((p["total_cost"] for p in ps if p["name"] == "mark-rs-per-model"), None)
    for p in ps:
        ms = p.get("models", {})
        att = " / ".join(f"{m} {v['attainment']:.4f}" for m, v in ms.items())
        p99 = " / ".join(f"{m} {v['p99_ms']:.0f}" for m, v in ms.items())
        vs = f"{100 * (p['total_cost'] / apart - 1):+.1f}%" if apart else "-"
        tl = p["timeline"]
        zero = sum(1 for s in tl if s["instances"] == 0) / max(len(tl), 1)
        print(f"| {label} | {p['name']} | {p['total_cost']:.2f} | {vs} | {att} | {p99} | {p['launches']} "
              f"| {p['lambda_share']:.3f} | {100 * zero:.0f}% |")
PY
