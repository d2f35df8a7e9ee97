"""The twelve-run table of docs/simulation.md "Spending the SLO" from scripts/bench-slack.sh.

usage: slack_table.py DIR   (DIR holds new-WORKLOAD/ and, optionally, base-WORKLOAD/ runs)
Per workload and market: mark-rs's cost, attainment, p99 and launches with this build (new) and
the base build, and MArk as released's cost and attainment; the totals over the twelve runs.
"""

import json
import os
import sys

WORKLOADS = ["day", "day10", "steps", "steps10", "mmpp", "mmpp10"]


def load(root, tag, w):
    f = os.path.join(root, f"{tag}-{w}", "summary.json")
    if not os.path.isfile(f):
        return {}
    return {(p["name"], p["spot"]): p for p in json.load(open(f))["policies"]}


def main():
    root = sys.argv[1]
    print("| run | mark-rs (this build) | mark-rs (base) | change | mark-released |")
    print("|---|---|---|---|---|")
    tot = {"new": 0.0, "base": 0.0}
    worst = 1.0
    cheaper_where_released_meets = True
    for w in WORKLOADS:
        new, base = load(root, "new", w), load(root, "base", w)
        for spot in (False, True):
            n, b = new.get(("mark-rs", spot)), base.get(("mark-rs", spot))
            r = new.get(("mark-released", spot))
            if not n:
                continue
            fmt = lambda p: (f"${p['total_cost']:.2f}, {p['attainment']:.4f}, p99 {p['p99_ms']:.0f} ms, "
                             f"{p['launches']} launches") if p else "-"
            tot["new"] += n["total_cost"]
            tot["base"] += b["total_cost"] if b else 0.0
            worst = min(worst, n["attainment"])
            change = f"{(n['total_cost'] / b['total_cost'] - 1) * 100:+.1f}%" if b else "-"
            rel = f"${r['total_cost']:.2f}, {r['attainment']:.4f}" if r else "-"
            if r and r["attainment"] >= 0.99 and r["total_cost"] <= n["total_cost"]:
                cheaper_where_released_meets = False
            print(f"| {w}{' +spot' if spot else ''} | {fmt(n)} | {fmt(b)} | {change} | {rel} |")
    if tot["base"] > 0:
        print(f"\ntotal over the runs: ${tot['new']:.2f} (this build) vs ${tot['base']:.2f} (base): "
              f"{(tot['new'] / tot['base'] - 1) * 100:+.1f}%")
    else:
        print(f"\ntotal over the runs: ${tot['new']:.2f}")
    print(f"lowest attainment: {worst:.4f}; mark-rs cheaper than MArk as released wherever it meets "
          f"0.99: {'yes' if cheaper_where_released_meets else 'NO'}")


if __name__ == "__main__":
    main()
