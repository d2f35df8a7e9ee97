#!/usr/bin/env python3
"""Generate the test suite's models whose outputs are NOT one row per input row (issue 25), and
one that is row-wise but whose ONNX dims carry no names. Batching any of the first four would
answer a client from other clients' rows; the gateway must find that out by itself.

  reduce_batch  X[N,4] -> Y[4]      = sum of X over the batch axis (ReduceSum axis 0)
  transpose     X[N,4] -> Y[4,N]    = X transposed
  scalar_out    X[N,4] -> S[]       = sum of all of X (rank 0), and D[N,4] = 2X (row-wise)
  center_batch  X[N,4] -> Y[N,4]    = X - mean of X over the batch axis: its signature looks
                                      row-wise ("N" on both sides); only real rows show it is not
                                      (what batch norm in training mode does)
    rowwise_anon  X[?,4] -> Y[?,4]    = 2X + 1 with unnamed dynamic dims: batchable, by the data check
    filter_rows   X[N,4] -> Y[M,4]    the rows whose sum is positive (Compress): a data-dependent row
                                      count, as a detector's variable number of boxes. ONNX Runtime
                                      reports dim 0 as N; only a run shows M != N. Forced to batch,
                                      a batch whose rows do not add up must be rerun request by
                                      request, never divided

Usage: gen_test_models.py OUT_DIR   (idempotent)
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def save(nodes, inputs, outputs, inits, path):
    g = helper.make_graph(nodes, "main", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mark-rs gen_test_models.py")
    m.ir_version = 8
    onnx.checker.check_model(m)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(m, path + ".tmp")
    os.replace(path + ".tmp", path)


def x(dim0="N"):
    return helper.make_tensor_value_info("X", TensorProto.FLOAT, [dim0, 4])


def axes0():
    return numpy_helper.from_array(np.array([0], np.int64), "axes0")


MODELS = {
    "reduce_batch": lambda p: save(
        [helper.make_node("ReduceSum", ["X", "axes0"], ["Y"], keepdims=0)],
        [x()], [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4])], [axes0()], p),
    "transpose": lambda p: save(
        [helper.make_node("Transpose", ["X"], ["Y"], perm=[1, 0])],
        [x()], [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4, "N"])], [], p),
    "scalar_out": lambda p: save(
        [helper.make_node("ReduceSum", ["X"], ["S"], keepdims=0),
         helper.make_node("Add", ["X", "X"], ["D"])],
        [x()], [helper.make_tensor_value_info("S", TensorProto.FLOAT, []),
                helper.make_tensor_value_info("D", TensorProto.FLOAT, ["N", 4])], [], p),
    "center_batch": lambda p: save(
        [helper.make_node("ReduceMean", ["X"], ["M"], axes=[0], keepdims=1),
         helper.make_node("Sub", ["X", "M"], ["Y"])],
        [x()], [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])], [], p),
            "filter_rows": lambda p: save(
        [helper.make_node("ReduceSum", ["X", "axes1"], ["S"], keepdims=0),
         helper.make_node("Greater", ["S", "zero"], ["C"]),
         helper.make_node("Compress", ["X", "C"], ["Y"], axis=0)],
        [x()], [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array([1], np.int64), "axes1"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero")], p),
    "rowwise_anon": lambda p: save(
        [helper.make_node("Mul", ["X", "two"], ["T"]), helper.make_node("Add", ["T", "one"], ["Y"])],
        [x(None)], [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 4])],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
         numpy_helper.from_array(np.array(1.0, np.float32), "one")], p),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else ".mark/test-models"
    for name, fn in MODELS.items():
        path = os.path.join(out, name, "model.onnx")
        if not os.path.exists(path):
            fn(path)
            print(f"generated {path}")


if __name__ == "__main__":
    main()
