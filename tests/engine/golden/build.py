"""Rebuild the plain interpreter's golden outputs (``test_plain_golden.py``).

Run from the repository root with the engine whose numbers are to be frozen::

    PYTHONPATH=$PWD python tests/engine/golden/build.py

Writes, per model, ``NAME.onnx`` (the graph, so the test needs neither TensorFlow nor tf2onnx) and
``NAME.npz``: the seeded feeds, and every tensor the plain path computes (all tapped, no fusion) in
float32 and float64, with the numpy version and OpenBLAS kernels they were computed with
(a matmul's rounding depends on them). The files in the repository were made at commit d88f726,
before the fused path moved behind ``Interpreter(fuse=...)``.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
MODELS = HERE.parents[2] / "models"
KERAS_MODELS = ("seed_regression", "trained_regression", "small_cnn", "text_lstm", "learner_sequential")


def blas_core() -> str:
    """The OpenBLAS kernels NumPy runs, as OpenBLAS names them ("" when unknown)."""
    for path in glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*")):
        for symbol in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename"):
            try:
                get = getattr(ctypes.CDLL(path), symbol)
            except (OSError, AttributeError):
                continue
            get.restype = ctypes.c_char_p
            return get().decode()
    return ""


def _graph(name, nodes, constants, x_shape):
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(a, n) for n, a in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def engine_fixtures() -> dict[str, onnx.ModelProto]:
    """Conv graphs of every kind the fused path handles or refuses, seeded."""
    rng = np.random.default_rng(11)

    def randn(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    c = 6
    common = {
        "pads": np.array([0, 0, 0, 1, 0, 0, 1, 0], dtype=np.int64),
        "zero": np.array(0.0, dtype=np.float32),
        "lo": np.array(0.0, dtype=np.float32),
        "hi": np.array(6.0, dtype=np.float32),
        "w_ex": randn(c, 3, 1, 1),
        "b_ex": randn(c),
        "w_dw": randn(c, 1, 3, 3),
        "b_dw": randn(c),
        "scale": randn(c, 1, 1),
        "w_pj": randn(3, c, 1, 1),
        "w_stem": randn(c, 3, 3, 3),
        "w_dw2": randn(2 * c, 1, 3, 3),
        "w_grp": randn(4, 2, 3, 3),
    }
    node = helper.make_node
    mobilenet_block = [
        node("Conv", ["x", "w_ex", "b_ex"], ["e"]),
        node("Clip", ["e", "lo", "hi"], ["r"]),
        node("Pad", ["r", "pads", "zero"], ["p"]),
        node("Conv", ["p", "w_dw", "b_dw"], ["d"], group=c, strides=[2, 2]),
        node("Mul", ["d", "scale"], ["m"]),
        node("Clip", ["m", "lo", "hi"], ["k"]),
        node("Conv", ["k", "w_pj"], ["y"]),
    ]
    residual_block = [
        node("Conv", ["x", "w_ex", "b_ex"], ["e"]),
        node("Relu", ["e"], ["r"]),
        node("Conv", ["r", "w_dw", "b_dw"], ["d"], group=c, pads=[1, 1, 1, 1]),
        node("Conv", ["d", "w_pj"], ["q"]),
        node("Add", ["x", "q"], ["y"]),
    ]
    stem = [
        node("Pad", ["x", "pads", "zero"], ["px"]),
        node("Conv", ["px", "w_stem"], ["e"], strides=[2, 2]),
        node("Clip", ["e", "lo", "hi"], ["r"]),
        node("Conv", ["r", "w_dw2"], ["d"], group=c, pads=[1, 1, 1, 1], dilations=[2, 1]),
        node("Relu", ["d"], ["y"]),
    ]
    grouped = [  # two groups of two channels (not depthwise), then an elementwise tail in place
        node("Conv", ["x", "w_grp"], ["g"], group=2, pads=[1, 1, 1, 1]),
        node("Mul", ["g", "g"], ["s"]),
        node("Relu", ["s"], ["y"]),
    ]
    conv1d = {"w1": randn(8, 1, 5), "b1": randn(8)}  # depthwise with multiplier 2, 1-D
    conv3d = {"w3": randn(2, 1, 2, 3, 3)}
    return {
        "mobilenet_block": _graph("mobilenet_block", mobilenet_block, common, [5, 3, 21, 19]),
        "residual_block": _graph("residual_block", residual_block, common, [4, 3, 16, 17]),
        "stem_dilated": _graph("stem_dilated", stem, common, [3, 3, 20, 18]),
        "grouped_square": _graph("grouped_square", grouped, common, [2, 4, 9, 11]),
        "depthwise_1d": _graph(
            "depthwise_1d",
            [node("Conv", ["x", "w1", "b1"], ["y"], group=4, strides=[2], pads=[2, 1])],
            conv1d,
            [3, 4, 30],
        ),
        "depthwise_3d": _graph(
            "depthwise_3d",
            [node("Conv", ["x", "w3"], ["y"], group=2, pads=[0, 1, 1, 1, 0, 1])],
            conv3d,
            [2, 2, 4, 7, 6],
        ),
    }


def keras_models() -> dict[str, onnx.ModelProto]:
    from xverify.convert import convert
    from xverify.load import load_keras

    return {name: convert(load_keras(MODELS / f"{name}.keras")) for name in KERAS_MODELS}


def feeds_for(model: onnx.ModelProto, seed: int) -> dict[str, np.ndarray]:
    """Seeded feeds: batch 3 for symbolic dims, normal floats, small non-negative integers."""
    rng = np.random.default_rng(seed)
    feeds = {}
    inits = {i.name for i in model.graph.initializer}
    for value in model.graph.input:
        if value.name in inits:
            continue
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 3 for d in tensor.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        if dtype.kind == "f":
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[value.name] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


def plain_run(model, dtype, feeds) -> dict[str, np.ndarray]:
    """Every tensor of the plain path (no fusion), all tapped."""
    from xverify.engine import Interpreter

    try:
        interp = Interpreter(model, dtype, fuse=False)
    except TypeError:  # the engine before the fused path had a switch: a callback forced it off
        interp = Interpreter(model, dtype)
        return interp.run(feeds, taps="all", on_tensor=lambda name, value: None)
    return interp.run(feeds, taps="all")


def main() -> int:
    models = {**engine_fixtures(), **keras_models()}
    for seed, (name, model) in enumerate(sorted(models.items())):
        feeds = feeds_for(model, seed)
        arrays = {f"feed/{k}": v for k, v in feeds.items()}
        for dtype in ("float32", "float64"):
            arrays.update({f"{dtype}/{k}": v for k, v in plain_run(model, dtype, feeds).items()})
        onnx.save(model, str(HERE / f"{name}.onnx"))
        np.savez_compressed(
            HERE / f"{name}.npz", **arrays, numpy=np.array(np.__version__), blas=np.array(blas_core())
        )
        print(name, len(arrays), "arrays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
