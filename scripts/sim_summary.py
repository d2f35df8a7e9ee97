"""The cross-workload table of docs/simulation.md from the runs of scripts/bench-sim.sh.

usage: sim_summary.py DIR...   (each DIR a `mark simulate --out` directory with summary.json)
Per workload and market: mark-rs's SLO attainment, $ per 1M requests, how many times cheaper it is
than each other strategy (x < 1: that strategy is cheaper), that strategy's attainment in
brackets, and the instance-hours of mark-rs by type (which types it picked).
"""

import json
import os
import sys


def main():
    rows = []
    for d in sys.argv[1:]:
        s = json.load(open(os.path.join(d, "summary.json")))
        by = {(p["name"], p["spot"]): p for p in s["policies"]}
        for spot in (False, True):
            me = by.get(("mark-rs", spot))
            if not me:
                continue
            cells = []
            for name in ("sagemaker", "static-peak", "lambda-only", "mark-released"):
                # sagemaker and lambda-only run once (no spot)
                other = by.get((name, spot)) or by.get((name, False))
                if other:
                    cells.append(f"{other['total_cost'] / me['total_cost']:.2f}x ({other['attainment']:.3f})")
                else:
                    cells.append("-")
            hours = {}
            for k, v in me["instance_hours"].items():
                ty = k.split("/")[0]
                hours[ty] = hours.get(ty, 0.0) + v
            mix = ", ".join(f"{t} {h:.0f}" for t, h in sorted(hours.items(), key=lambda x: -x[1]) if h >= 0.5)
            label = os.path.basename(d.rstrip("/")) + (" +spot" if spot else "")
            rows.append([label, f"{me['attainment']:.4f}", f"{me['dollars_per_million']:.3f}"] + cells
                        + [str(me["launches"]), f"{me['lambda_share']:.4f}", mix])
    head = ["run", "mark-rs att", "$/1M", "vs sagemaker", "vs static-peak", "vs lambda-only",
            "vs mark-released", "launches", "lambda", "mark-rs instance-hours by type"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
