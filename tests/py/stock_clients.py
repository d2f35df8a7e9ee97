#!/usr/bin/env python3
"""Stock v2 client (tritonclient[http], unchanged) against the gateway, and the real magika model's
answers compared with running it directly through onnxruntime in Python.

Usage: stock_clients.py HOST:PORT MODEL_REPO
"""
import sys

import numpy as np
import onnxruntime as ort
import tritonclient.http as httpclient

url, repo = sys.argv[1], sys.argv[2]
c = httpclient.InferenceServerClient(url=url)
assert c.is_server_live() and c.is_server_ready()
assert c.is_model_ready("mlp")
meta = c.get_model_metadata("mlp")
assert meta["inputs"][0]["shape"] == [-1, 784], meta

# MLP through JSON and through binary tensors, one output each way.
x = np.random.default_rng(1).random((3, 784), dtype=np.float32)
ref = ort.InferenceSession(f"{repo}/mlp/model.onnx").run(None, {"input": x})
for binary in (False, True):
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outs = [httpclient.InferRequestedOutput("logits", binary_data=binary), httpclient.InferRequestedOutput("probs", binary_data=not binary)]
    r = c.infer("mlp", [inp], outputs=outs, request_id="tc-1")
    assert r.get_response()["id"] == "tc-1"
    np.testing.assert_allclose(r.as_numpy("logits"), ref[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r.as_numpy("probs"), ref[1], rtol=1e-5, atol=1e-6)

# A bad request surfaces as the client's exception with our message.
try:
    bad = httpclient.InferInput("input", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
    c.infer("mlp", [bad])
    raise SystemExit("bad shape was accepted")
except httpclient.InferenceServerException as e:
    assert "model expects [-1,784]" in str(e), str(e)

# magika: real pretrained model (int32 bytes features -> 214 content types).
sess = ort.InferenceSession(f"{repo}/magika/model.onnx")
rng = np.random.default_rng(7)
feats = rng.integers(0, 257, size=(5, 2048), dtype=np.int32)
expected = sess.run(None, {"bytes": feats})[0]
inp = httpclient.InferInput("bytes", list(feats.shape), "INT32")
inp.set_data_from_numpy(feats, binary_data=True)
got = c.infer("magika", [inp]).as_numpy("target_label")
np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
assert (got.argmax(1) == expected.argmax(1)).all()
print("stock tritonclient OK; magika matches onnxruntime (max abs diff %.2e)" % np.abs(got - expected).max())
