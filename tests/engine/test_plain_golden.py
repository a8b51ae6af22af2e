"""The plain path computes what it computed before the fast path moved behind ``fuse=``, and the
fused path the same to float rounding.

``golden/`` holds example models (converted) and engine conv graphs with seeded feeds and every
tensor the plain path made at commit d88f726 (``golden/build.py``). A matmul's rounding depends on
the BLAS kernels, so the comparison is bit for bit where numpy and OpenBLAS's kernels are the ones
the files were made with, and within float rounding elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from xverify.engine import Interpreter

GOLDEN = Path(__file__).resolve().parent / "golden"
NAMES = sorted(p.stem for p in GOLDEN.glob("*.onnx"))


def _blas_core() -> str:
    import importlib.util

    spec = importlib.util.spec_from_file_location("golden_build", GOLDEN / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.blas_core()


@pytest.fixture(scope="module")
def same_arithmetic():
    """Whether this numpy and BLAS are those the golden files were made with."""
    with np.load(GOLDEN / f"{NAMES[0]}.npz") as saved:
        return str(saved["numpy"]) == np.__version__ and str(saved["blas"]) == _blas_core()


def _load(name):
    model = onnx.load(str(GOLDEN / f"{name}.onnx"))
    with np.load(GOLDEN / f"{name}.npz") as saved:
        arrays = {key: saved[key] for key in saved.files if "/" in key}
    feeds = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("feed/")}
    return model, feeds, arrays


def _assert_same(got, want, exact, label):
    if exact:
        np.testing.assert_array_equal(got, want, err_msg=label)
    else:
        tol = 1e-5 if want.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=label)


def test_golden_files_cover_the_models_and_the_conv_fixtures():
    assert {"small_cnn", "text_lstm", "seed_regression", "mobilenet_block", "depthwise_3d"} <= set(NAMES)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_plain_path_gives_the_saved_numbers(name, dtype, same_arithmetic):
    model, feeds, saved = _load(name)
    want = {k.split("/", 1)[1]: v for k, v in saved.items() if k.startswith(f"{dtype}/")}
    interp = Interpreter(model, dtype, fuse=False)
    tapped = interp.run(feeds, taps="all")
    outputs = interp.run(feeds)  # no taps: kernels may write in place
    assert set(tapped) == set(want)
    for tensor, value in want.items():
        _assert_same(tapped[tensor], value, same_arithmetic, f"{name} {dtype} {tensor}")
    for tensor, value in outputs.items():
        _assert_same(value, want[tensor], same_arithmetic, f"{name} {dtype} output {tensor}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_fused_path_gives_the_plain_numbers_to_rounding(name, dtype):
    model, feeds, saved = _load(name)
    fused = Interpreter(model, dtype, fuse=True).run(feeds)
    for tensor, value in fused.items():
        _assert_same(value, saved[f"{dtype}/{tensor}"], False, f"{name} {dtype} fused {tensor}")
