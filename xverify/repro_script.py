"""The standalone script a repro directory holds (xverify/repro.py fills it in with str.format)."""

TEMPLATE = '''\
"""Repro by xverify: layer {layer!r} of {source}, cut out of its ONNX graph (model.onnx).

ONNX Runtime on the cut graph is compared with {expected}'s output of the same tensor, saved in
test_data_set_0/output_0.pb (its inputs are input_*.pb there; outputs/ holds both runtimes'
values). Needs numpy, onnx and onnxruntime only. Exit 1: the mismatch reproduces; 0: it does not.
"""

import glob
import os
import sys

import numpy as np
import onnx
import onnxruntime
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ATOL, RTOL = {atol}, {rtol}  # the check's tolerance


def load(path):
    tensor = onnx.TensorProto()
    with open(path, "rb") as handle:
        tensor.ParseFromString(handle.read())
    return tensor.name, numpy_helper.to_array(tensor)


data = os.path.join(HERE, "test_data_set_0")
feeds = dict(load(p) for p in glob.glob(os.path.join(data, "input_*.pb")))
name, expected = load(os.path.join(data, "output_0.pb"))
options = onnxruntime.SessionOptions()
options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
session = onnxruntime.InferenceSession(
    os.path.join(HERE, "model.onnx"), options, providers=["CPUExecutionProvider"]
)
got = session.run([name], feeds)[0].astype(np.float64)
expected = expected.astype(np.float64)
# A layer is judged at its own scale (xverify's rule): atol at least RTOL times its largest value.
atol = max(ATOL, RTOL * float(np.max(np.abs(expected), initial=0.0)))
diff = np.abs(got - expected)
ok = (diff <= atol + RTOL * np.abs(expected)) | (np.isnan(got) & np.isnan(expected)) | (got == expected)
print(f"onnxruntime {{onnxruntime.__version__}} vs {expected} on {{name!r}}: max abs diff "
      f"{{np.nanmax(diff):.3g}}, {{(~ok).sum()}} of {{ok.size}} elements beyond atol {{atol:.3g}} rtol {{RTOL:g}}")
if not ok.all():
    print("MISMATCH reproduced")
    sys.exit(1)
print("no mismatch: the values agree within tolerance")

'''
