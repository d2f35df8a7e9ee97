#!/usr/bin/env python3
"""Generate the demo model repository.

Models (all with a dynamic batch dimension):
  resnet18  ResNet-18 topology (conv7x7, 4 stages x 2 basic blocks, global pool, fc-1000) at 224x224.
            RANDOM weights (He init): it has the shape and the cost of ResNet-18, not its accuracy.
  mlp       784-512-256-10 MLP, RANDOM weights. Overhead-bound: batching helps a lot here.
  magika    Google's real pretrained content-type model (Apache-2.0), copied from the `magika` 1.0.3
            PyPI wheel: int32 [N,2048] -> float32 [N,214].

Usage: gen_models.py OUT_DIR   (idempotent: existing models are kept)
"""
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
rng = np.random.default_rng(20190710)  # fixed seed: the same bytes on every machine


def he(shape, fan_in):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, p):
        self.n += 1
        return f"{p}_{self.n}"

    def const(self, arr, p="w"):
        n = self.name(p)
        self.inits.append(numpy_helper.from_array(arr, n))
        return n

    def op(self, op, inputs, **attrs):
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x, cin, cout, k, stride, relu=True):
        w = self.const(he((cout, cin, k, k), cin * k * k) * 0.7)
        b = self.const(np.zeros(cout, np.float32), "b")
        y = self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
        return self.op("Relu", [y]) if relu else y


def save(graph, inputs, outputs, path, doc):
    g = helper.make_graph(graph.nodes, "main", inputs, outputs, graph.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mark-rs gen_models.py")
    m.ir_version = 8
    m.doc_string = doc
    onnx.checker.check_model(m)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(m, path + ".tmp")
    os.replace(path + ".tmp", path)


def resnet18(path):
    g = Graph()
    x = g.conv("input", 3, 64, 7, 2)
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        for blk in range(2):
            s = stride if blk == 0 else 1
            y = g.conv(x, cin, cout, 3, s)
            y = g.conv(y, cout, cout, 3, 1, relu=False)
            short = x if (s == 1 and cin == cout) else g.conv(x, cin, cout, 1, s, relu=False)
            x = g.op("Relu", [g.op("Add", [y, short])])
            cin = cout
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x], axis=1)
    w = g.const(he((512, 1000), 512))
    b = g.const(np.zeros(1000, np.float32), "b")
    logits = g.op("Add", [g.op("MatMul", [x, w]), b])
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    save(g, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
         [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])], path,
         "ResNet-18 topology with random weights (not trained)")


def mlp(path):
    g = Graph()
    x, cin = "input", 784
    for cout in [512, 256]:
        x = g.op("Relu", [g.op("Add", [g.op("MatMul", [x, g.const(he((cin, cout), cin))]),
                                      g.const(np.zeros(cout, np.float32), "b")])])
        cin = cout
    logits = g.op("Add", [g.op("MatMul", [x, g.const(he((cin, 10), cin))]), g.const(np.zeros(10, np.float32), "b")])
    g.nodes.append(helper.make_node("Softmax", [logits], ["probs"], axis=1))
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    save(g, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 784])],
         [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
          helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], path,
         "784-512-256-10 MLP with random weights (not trained)")


def magika(path):
    try:
        import magika  # noqa: F401  (installed with --no-deps: only its files are needed)
    except ImportError:
        print("magika not installed; skipping the real model", file=sys.stderr)
        return
    src = os.path.join(os.path.dirname(magika.__file__), "models", "standard_v3_3", "model.onnx")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copyfile(src, path)


CONFIGS = {
    "resnet18": 'max_batch_size = 8\nslo_ms = 300\nexecutors = 1\nintra_threads = 2\n',
    "mlp": 'max_batch_size = 64\nslo_ms = 50\nexecutors = 1\nintra_threads = 1\n',
    "magika": 'max_batch_size = 32\nslo_ms = 100\nexecutors = 1\nintra_threads = 1\n',
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "models"
    for name, fn in [("resnet18", resnet18), ("mlp", mlp), ("magika", magika)]:
        path = os.path.join(out, name, "model.onnx")
        if not os.path.exists(path):
            fn(path)
            print(f"generated {path}")
        cfg = os.path.join(out, name, "config.toml")
        if os.path.exists(path) and not os.path.exists(cfg):
            with open(cfg, "w") as f:
                f.write(CONFIGS[name])


if __name__ == "__main__":
    main()
