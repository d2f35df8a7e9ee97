"""Part of scripts/gpu-check.sh: the same inputs to a CPU gateway and a CUDA gateway, answers
compared; fails when the CUDA gateway's models did not get the CUDA provider (a silent fallback).

usage: gpu_compare.py CPU_URL CUDA_URL CUDA_ADMIN_URL ADMIN_TOKEN
Standard library only (it runs with any python3). Exit 0 when every model agrees, 1 otherwise.
"""

import json
import random
import sys
import time
import urllib.request

ROWS = 4  # items per request
ABS_TOL, REL_TOL = 1e-3, 1e-2


def call(url, body=None, token=None, timeout=120):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode())
    if body is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def wait_ready(base, secs=300):
    end = time.time() + secs
    while time.time() < end:
        try:
            with urllib.request.urlopen(base + "/v2/health/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{base} not ready within {secs} s")


def inputs_for(meta, rng):
    out = []
    for t in meta["inputs"]:
        shape = [ROWS if d < 0 else d for d in t["shape"]]
        n = 1
        for d in shape:
            n *= d
        dt = t["datatype"]
        if dt.startswith("FP"):
            data = [rng.gauss(0.0, 1.0) for _ in range(n)]
        elif dt == "BOOL":
            data = [rng.random() < 0.5 for _ in range(n)]
        else:
            data = [rng.randrange(0, 256) for _ in range(n)]
        out.append({"name": t["name"], "shape": shape, "datatype": dt, "data": data})
    return out


def close(a, b):
    return abs(a - b) <= ABS_TOL + REL_TOL * abs(a)


def rows(o):
    n = len(o["data"])
    k = o["shape"][0] if o["shape"] else 1
    w = n // max(k, 1)
    return [o["data"][i * w:(i + 1) * w] for i in range(k)] if w else []


def main():
    cpu, cuda, admin, token = sys.argv[1:5]
    wait_ready(cpu)
    wait_ready(cuda)
    ok = True
    status = call(admin + "/admin/v1/status", token=token)
    providers = {m["name"]: m.get("execution_provider") for m in status["models"]}
    for name, p in sorted(providers.items()):
        if p != "cuda":
            print(f"{name}: configured for CUDA, running on {p}: CUDA fell back to CPU")
            ok = False
    rng = random.Random(10)
    for name in sorted(providers):
        meta = call(f"{cpu}/v2/models/{name}")
        body = {"inputs": inputs_for(meta, rng)}
        a = call(f"{cpu}/v2/models/{name}/infer", body)
        b = call(f"{cuda}/v2/models/{name}/infer", body)
        worst, bad, argmax_bad = 0.0, 0, 0
        for oa, ob in zip(a["outputs"], b["outputs"]):
            if oa["shape"] != ob["shape"] or len(oa["data"]) != len(ob["data"]):
                print(f"{name}/{oa['name']}: shapes differ {oa['shape']} vs {ob['shape']}")
                ok = False
                continue
            if not all(isinstance(x, (int, float)) for x in oa["data"]):
                bad += sum(x != y for x, y in zip(oa["data"], ob["data"]))
                continue
            for x, y in zip(oa["data"], ob["data"]):
                worst = max(worst, abs(x - y))
                bad += not close(x, y)
            for ra, rb in zip(rows(oa), rows(ob)):
                if ra and ra.index(max(ra)) != rb.index(max(rb)):
                    argmax_bad += 1
        verdict = "ok" if bad == 0 and argmax_bad == 0 else "DIFFERENT"
        print(f"{name}: max |cuda - cpu| = {worst:.2e}, {bad} elements beyond tolerance, "
              f"{argmax_bad} rows with another argmax: {verdict}")
        ok = ok and verdict == "ok"
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
