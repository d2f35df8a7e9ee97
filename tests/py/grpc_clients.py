#!/usr/bin/env python3
"""Stock tritonclient.grpc, unchanged, against `mark serve`: server and model metadata, inference
on every bundled model with raw contents (what tritonclient sends) and with typed contents (a
request built from tritonclient's own generated stubs), each answer equal bit for bit to the REST
answer (binary tensors) for the same input; and the gRPC codes of a wrong shape, an unknown model
and an oversized message.

Usage: grpc_clients.py GRPC_HOST:PORT HTTP_HOST:PORT MAX_MESSAGE_BYTES
"""
import sys

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

grpc_url, http_url, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
g = grpcclient.InferenceServerClient(url=grpc_url)
h = httpclient.InferenceServerClient(url=http_url)
assert g.is_server_live() and g.is_server_ready()
assert g.get_server_metadata().name == "mark-rs"
stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(grpc_url))

NP = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8}
TYPED = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT32": "int_contents",
         "INT64": "int64_contents", "UINT8": "uint_contents"}
rng = np.random.default_rng(11)


def sample(meta, rows):
    shape = [rows if d == -1 else d for d in meta.shape]
    dt = NP[meta.datatype]
    if np.issubdtype(dt, np.floating):
        return rng.random(shape, dtype=np.float64).astype(dt)
    return rng.integers(0, 256, size=shape).astype(dt)


def same_bits(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, (what, a.dtype, b.dtype, a.shape, b.shape)
    assert a.tobytes() == b.tobytes(), f"{what}: gRPC and REST answers differ"


checked = 0
for model in ("mlp", "resnet18", "magika"):
    assert g.is_model_ready(model)
    meta = g.get_model_metadata(model)
    rest_meta = h.get_model_metadata(model)
    assert [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == [
        (i["name"], i["datatype"], i["shape"]) for i in rest_meta["inputs"]], (meta, rest_meta)
    assert [o.name for o in meta.outputs] == [o["name"] for o in rest_meta["outputs"]]
    xs = {i.name: sample(i, 2) for i in meta.inputs}
    outs = [o.name for o in meta.outputs]

    # REST, binary tensors both ways: the reference
    rin = []
    for i in meta.inputs:
        t = httpclient.InferInput(i.name, list(xs[i.name].shape), i.datatype)
        t.set_data_from_numpy(xs[i.name], binary_data=True)
        rin.append(t)
    rest = h.infer(model, rin, outputs=[httpclient.InferRequestedOutput(o, binary_data=True) for o in outs])

    # gRPC, raw contents (tritonclient's way)
    gin = []
    for i in meta.inputs:
        t = grpcclient.InferInput(i.name, list(xs[i.name].shape), i.datatype)
        t.set_data_from_numpy(xs[i.name])
        gin.append(t)
    raw = g.infer(model, gin, request_id=f"raw-{model}")
    assert raw.get_response().id == f"raw-{model}"
    for o in outs:
        same_bits(raw.as_numpy(o), rest.as_numpy(o), f"{model}.{o} raw")

    # gRPC, typed contents, from tritonclient's generated stubs
    req = service_pb2.ModelInferRequest(model_name=model, id=f"typed-{model}")
    for i in meta.inputs:
        t = req.inputs.add(name=i.name, datatype=i.datatype, shape=list(xs[i.name].shape))
        getattr(t.contents, TYPED[i.datatype]).extend(xs[i.name].flatten().tolist())
    resp = stub.ModelInfer(req)
    assert resp.id == f"typed-{model}" and not resp.raw_output_contents
    for o in resp.outputs:
        got = np.array(getattr(o.contents, TYPED[o.datatype]), dtype=NP[o.datatype]).reshape(o.shape)
        same_bits(got, rest.as_numpy(o.name), f"{model}.{o.name} typed")
    checked += 1


def code_of(fn):
    try:
        fn()
    except InferenceServerException as e:
        return e.status(), e.message()
    raise SystemExit("the call was accepted")


bad = grpcclient.InferInput("input", [1, 3], "FP32")
bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
code, msg = code_of(lambda: g.infer("mlp", [bad]))
assert code == "StatusCode.INVALID_ARGUMENT" and "model expects [-1,784]" in msg, (code, msg)
code, msg = code_of(lambda: g.infer("nosuch", [bad]))
assert code == "StatusCode.NOT_FOUND" and "unknown model 'nosuch'" in msg, (code, msg)
code, msg = code_of(lambda: g.get_model_metadata("nosuch"))
assert code == "StatusCode.NOT_FOUND", (code, msg)
rows = limit // (784 * 4) + 1
big = grpcclient.InferInput("input", [rows, 784], "FP32")
big.set_data_from_numpy(np.zeros((rows, 784), np.float32))
code, msg = code_of(lambda: g.infer("mlp", [big]))
assert code == "StatusCode.RESOURCE_EXHAUSTED" and "--max-body-bytes" in msg, (code, msg)
# the server still answers after the refusals
one = grpcclient.InferInput("input", [1, 784], "FP32")
one.set_data_from_numpy(np.ones((1, 784), np.float32))
assert g.infer("mlp", [one]).as_numpy("logits").shape[0] == 1
print(f"stock tritonclient.grpc OK: {checked} models, raw and typed contents equal REST bit for bit; "
      "INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED as expected")
