#!/usr/bin/env python3
"""KServe's own Python SDK (`kserve` 0.21), unchanged, against `mark serve` (issue 25: its REST
client sends `model_name` in the body, which the gateway refused with 400).

For every bundled model: liveness and readiness, then inference with the REST client over
HTTP/1.1 and over HTTP/2 (prior knowledge, cleartext), each with JSON tensors and with binary
tensors, and with the gRPC client; every answer equal to onnxruntime's in Python for the same
input. Then the errors: a wrong shape (400 / INVALID_ARGUMENT), an unknown model (404 /
NOT_FOUND), a body naming another model (400).

Usage: kserve_clients.py HTTP_HOST:PORT GRPC_HOST:PORT MODELS_DIR
"""
import asyncio
import os
import sys

import grpc
import httpx
import numpy as np
import onnxruntime as ort
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

http_addr, grpc_addr, models_dir = sys.argv[1], sys.argv[2], sys.argv[3]
base = f"http://{http_addr}"
NP = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64}
ORT = {"tensor(float)": "FP32", "tensor(int32)": "INT32", "tensor(int64)": "INT64"}
rng = np.random.default_rng(25)


def sample(meta, rows):
    shape = [rows if not isinstance(d, int) else d for d in meta.shape]
    dt = NP[ORT[meta.type]]
    if np.issubdtype(dt, np.floating):
        return rng.random(shape, dtype=np.float64).astype(dt)
    return rng.integers(0, 256, size=shape).astype(dt)


def close(got, want, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if got.size else 0.0
    assert np.allclose(got, want, rtol=1e-4, atol=1e-5), f"{what}: max abs diff {err}"
    return err


def request(model, name, x, binary):
    i = InferInput(name=name, shape=list(x.shape), datatype=ORT_TYPE[name])
    i.set_data_from_numpy(x, binary_data=binary)
    return InferRequest(model_name=model, infer_inputs=[i], request_id=f"{model}-{binary}")


async def check_model(rest1, rest2, grpc_client, model):
    sess = ort.InferenceSession(os.path.join(models_dir, model, "model.onnx"))
    (inp,) = sess.get_inputs()
    ORT_TYPE[inp.name] = ORT[inp.type]
    x = sample(inp, 2)
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {inp.name: x})))
    worst = 0.0
    for label, client in [("REST HTTP/1.1", rest1), ("REST HTTP/2", rest2)]:
        assert await client.is_model_ready(base, model)
        for binary in (False, True):
            r = await client.infer(base, request(model, inp.name, x, binary), model_name=model)
            for name, w in want.items():
                worst = max(worst, close(r.get_output_by_name(name).as_numpy(), w, f"{model} {label} binary={binary} {name}"))
    assert await grpc_client.is_model_ready(model)
    r = await grpc_client.infer(request(model, inp.name, x, True))
    for name, w in want.items():
        worst = max(worst, close(r.get_output_by_name(name).as_numpy(), w, f"{model} gRPC {name}"))
    print(f"{model}: REST (HTTP/1.1, HTTP/2; JSON, binary) and gRPC equal onnxruntime (max abs diff {worst:.2e})")
    return inp, x


async def main():
    rest1 = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    # HTTP/2 without TLS: prior knowledge (httpx only negotiates h2 through TLS otherwise)
    h2 = httpx.AsyncHTTPTransport(http1=False, http2=True)
    rest2 = InferenceRESTClient(RESTConfig(protocol="v2", http2=True, transport=h2, timeout=60))
    probe = await rest2._client.get(f"{base}/v2/health/ready")
    assert probe.http_version == "HTTP/2", probe.http_version
    grpc_client = InferenceGRPCClient(grpc_addr, timeout=60)
    assert await rest1.is_server_live(base) and await rest1.is_server_ready(base)
    assert await rest2.is_server_live(base) and await rest2.is_server_ready(base)
    assert await grpc_client.is_server_live() and await grpc_client.is_server_ready()

    models = sorted(m for m in os.listdir(models_dir) if os.path.isfile(os.path.join(models_dir, m, "model.onnx")))
    samples = {}
    for model in models:
        samples[model] = await check_model(rest1, rest2, grpc_client, model)

    # errors: a wrong shape, an unknown model, a body naming another model
    inp, x = samples["mlp"]
    bad = x[:, :-1].copy()
    for client in (rest1, rest2):
        try:
            await client.infer(base, request("mlp", inp.name, bad, False), model_name="mlp")
            raise AssertionError("wrong shape accepted")
        except httpx.HTTPStatusError as e:
            assert e.response.status_code == 400 and "shape" in str(e), e
        try:
            await client.infer(base, request("nope", inp.name, x, False), model_name="nope")
            raise AssertionError("unknown model accepted")
        except httpx.HTTPStatusError as e:
            assert e.response.status_code == 404 and "nope" in str(e), e
        try:
            await client.infer(base, request("magika", inp.name, x, False), model_name="mlp")
            raise AssertionError("body naming another model accepted")
        except httpx.HTTPStatusError as e:
            assert e.response.status_code == 400 and "magika" in str(e), e
    for model, arr, code in [("mlp", bad, grpc.StatusCode.INVALID_ARGUMENT), ("nope", x, grpc.StatusCode.NOT_FOUND)]:
        try:
            await grpc_client.infer(request(model, inp.name, arr, True))
            raise AssertionError(f"gRPC {model} accepted")
        except grpc.RpcError as e:
            assert e.code() == code, (model, e.code(), e.details())
    print("errors: 400 wrong shape, 404 unknown model, 400 body naming another model (REST); INVALID_ARGUMENT, NOT_FOUND (gRPC)")
    await rest1.close()
    await rest2.close()
    await grpc_client.close()


ORT_TYPE = {}
asyncio.run(main())
