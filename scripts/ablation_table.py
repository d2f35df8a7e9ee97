"""The ablation table of docs/simulation.md from scripts/bench-ablation.sh's runs.

usage: ablation_table.py DIR   (DIR holds WORKLOAD-ABLATION/summary.json)
Per ablation (a source of headroom turned off; `slack-feedback`: the feedback added) and workload:
cost (USD), SLO attainment, p99 (ms) and launches of mark-rs on demand; the cost change against
`none` (the defaults) in brackets.
"""

import json
import os
import sys

WORKLOADS = ["day", "day10", "steps", "steps10", "mmpp", "mmpp10"]


def main():
    root = sys.argv[1]
    runs = {}
    for d in sorted(os.listdir(root)):
        f = os.path.join(root, d, "summary.json")
        if not os.path.isfile(f):
            continue
        w, a = d.split("-", 1)
        p = json.load(open(f))["policies"][0]
        runs[(w, a)] = p
    ablations = []
    for (_, a) in runs:
        if a not in ablations:
            ablations.append(a)
    ablations.sort(key=lambda a: (a != "none", a))
    head = ["turned off"] + WORKLOADS + ["total $"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for a in ablations:
        cells, total, complete = [], 0.0, True
        for w in WORKLOADS:
            p, base = runs.get((w, a)), runs.get((w, "none"))
            if not p:
                cells.append("-")
                complete = False
                continue
            total += p["total_cost"]
            delta = ""
            if base and a != "none":
                delta = f" ({(p['total_cost'] / base['total_cost'] - 1) * 100:+.1f}%)"
            cells.append(f"${p['total_cost']:.2f}{delta}, {p['attainment']:.4f}, "
                         f"p99 {p['p99_ms']:.0f}, {p['launches']} launches")
        print(f"| {a} | " + " | ".join(cells) + f" | {'$%.2f' % total if complete else '-'} |")


if __name__ == "__main__":
    main()
