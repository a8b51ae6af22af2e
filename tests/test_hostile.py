"""Hostile and absurd files: each ends in exit 2 with one message, never an internal error.

Every file here is built small: a declared size is a header field, so a "2 GiB" member or a tensor of
4e10 elements costs bytes on disk, and the checks must refuse it before allocating anything.
"""

from __future__ import annotations

import struct
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

import xverify
from xverify.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_clean_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert result.output.count("error:") == 1, result.output
    text = " ".join(result.output.split())
    for needle in needles:
        assert str(needle) in text, (needle, result.output)


def _onnx_file(path, nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def _lying_zip(path, source, member, declared):
    """Copy the ``.keras`` zip ``source``, with ``member``'s declared size set to ``declared``
    in both its local header and the central directory (the data stays as it is)."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo(member)
    struct.pack_into("<I", data, info.header_offset + 22, declared)  # local header file size
    central = data.rfind(b"PK\x01\x02" + data[info.header_offset + 4 : info.header_offset + 8])
    start = 0
    while True:  # the central directory entry naming this member
        central = data.find(b"PK\x01\x02", start)
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + name_len].decode() == member:
            break
        start = central + 4
    struct.pack_into("<I", data, central + 24, declared)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, models_dir, example_models):
    d = tmp_path_factory.mktemp("hostile")
    good = models_dir / "seed_regression.keras"
    # a .keras whose config.json inflates to 80 MiB (a real deflate bomb, kept small for the test)
    with zipfile.ZipFile(d / "bomb.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        with zipfile.ZipFile(good) as original:
            for item in original.infolist():
                if item.filename != "config.json":
                    archive.writestr(item, original.read(item))
        archive.writestr("config.json", b" " * (80 * 2**20))
    _lying_zip(d / "lying.keras", good, "model.weights.h5", 2**31)
    data = good.read_bytes()
    (d / "truncated.keras").write_bytes(data[: len(data) // 2])
    h5 = (models_dir / "seed_regression.h5").read_bytes()
    (d / "truncated.h5").write_bytes(h5[: len(h5) // 2])
    (d / "png.keras").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 200000, 200000])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 200000, 200000])
    _onnx_file(d / "huge_input.onnx", [helper.make_node("Relu", ["x"], ["y"])], [x], [y])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 1])
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 1, 1])
    big = helper.make_tensor("big_shape", TensorProto.INT64, [3], [1, 100000, 100000])
    _onnx_file(
        d / "huge_tensor.onnx",
        [
            helper.make_node("ConstantOfShape", ["big_shape"], ["c"]),
            helper.make_node("Mul", ["x", "c"], ["m"]),
            helper.make_node("ReduceMax", ["m"], ["s"], keepdims=1),
        ],
        [x],
        [s],
        [big],
    )
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    short = TensorProto(
        name="w", data_type=TensorProto.FLOAT, dims=[4, 4], raw_data=np.ones(8, np.float32).tobytes()
    )  # helper.make_tensor refuses
    _onnx_file(d / "short_weight.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])], [x], [y], [short])
    nan = helper.make_tensor(
        "w", TensorProto.FLOAT, [4, 4], np.full(16, np.nan, np.float32).tobytes(), raw=True
    )
    _onnx_file(d / "nan_weight.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])], [x], [y], [nan])
    with open(d / "huge.npy", "wb") as handle:  # a header declaring 8e12 values, and no data
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<f4", "fortran_order": False, "shape": (2, 2000000, 2000000)}
        )
    with zipfile.ZipFile(d / "garbage.npz", "w") as archive:
        archive.writestr("x.npy", b"not an array")
    return d


HOSTILE = [
    (["check", "{d}/bomb.keras"], ["bomb.keras", "config.json", "at most a few MiB"]),
    (["check", "{d}/lying.keras"], ["lying.keras", "model.weights.h5", "decompression bomb"]),
    (["check", "{d}/truncated.keras"], ["truncated.keras", "truncated"]),
    (["check", "{d}/truncated.h5"], ["truncated.h5", "truncated"]),
    (["check", "{d}/png.keras"], ["png.keras", "expected a .keras zip archive"]),
    (
        ["check", "{d}/huge_input.onnx", "--samples", "2"],
        ["input 'x' of shape (2, 200000, 200000)", "a quarter of this machine's memory", "--samples"],
    ),
    (
        ["check", "{d}/huge_tensor.onnx", "--samples", "2"],
        ["shape (2, 100000, 100000)", "over the memory budget", "--max-memory"],
    ),
    (["check", "{d}/short_weight.onnx"], ["short_weight.onnx", "declare"]),
    (["check", "{d}/nan_weight.onnx"], ["nan_weight.onnx", "'w'", "NaN"]),
    (["check", "{m}", "--inputs", "{d}/huge.npy"], ["huge.npy", "over the memory budget"]),
    (["check", "{m}", "--inputs", "{d}/garbage.npz"], ["garbage.npz", "cannot read inputs"]),
    (
        ["check", "{m}", "--max-memory", "1KiB"],
        ["seed_regression.keras", "over the memory budget", "1.0 KiB (set by --max-memory)"],
    ),
    (["check", "{h5}", "--max-memory", "100"], ["seed_regression.h5", "datasets"]),
    (["check", "{m}", "--max-memory", "lots"], ["--max-memory 'lots'", "6GiB"]),
    (["check", "{m}", "--atol", "nan"], ["--atol nan", "finite number >= 0"]),
    (["check", "{m}", "--rtol", "inf"], ["--rtol inf", "finite number >= 0"]),
    (["check", "{m}", "--atol", "-1"], ["--atol -1.0", "finite number >= 0"]),
    (["convert", "{d}/bomb.keras", "-o", "{d}/out.onnx"], ["bomb.keras", "config.json"]),
]


@pytest.mark.parametrize(
    "args, needles", HOSTILE, ids=[" ".join(a[:2]) + str(i) for i, (a, _) in enumerate(HOSTILE)]
)
def test_hostile_input_exits_2_with_one_message(hostile, models_dir, args, needles):
    result = run(
        *[
            a.format(d=hostile, m=models_dir / "seed_regression.keras", h5=models_dir / "seed_regression.h5")
            for a in args
        ]
    )
    assert_clean_error(result, *needles)


def test_bombs_refused_before_keras_reads_them(hostile, monkeypatch):
    import keras

    def never(*args, **kwargs):
        raise AssertionError("keras.saving.load_model was reached")

    monkeypatch.setattr(keras.saving, "load_model", never)
    for name in ("bomb.keras", "lying.keras"):
        with pytest.raises(xverify.ModelFileError):
            xverify.check(hostile / name)


def test_library_refuses_no_model():
    """check(None) says what it expected (found by mypy: the missing model file's path was read
    from None, an AttributeError)."""
    with pytest.raises(xverify.UsageError, match="expected a model file path or a Keras model"):
        xverify.check(None)


@pytest.mark.parametrize("atol, rtol", [(float("nan"), None), (None, float("inf")), (-1e-3, None)])
def test_library_refuses_bad_tolerances(models_dir, atol, rtol):
    with pytest.raises(ValueError, match="finite number >= 0") as info:
        xverify.check(models_dir / "seed_regression.keras", atol=atol, rtol=rtol)
    assert isinstance(info.value, xverify.UsageError)


def test_nan_and_inf_inputs_agree_position_by_position(models_dir, tmp_path):
    x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(-1, 1)
    x[2], x[5] = np.nan, np.inf
    np.save(tmp_path / "x.npy", x)
    result = run(
        "check",
        models_dir / "seed_regression.keras",
        "--inputs",
        tmp_path / "x.npy",
        "--json",
        tmp_path / "r.json",
    )
    assert result.exit_code == 0, result.output
    assert "non-finite" in result.output
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert any("1 NaN and 1 infinite" in note for note in report["notes"])
    assert all(c["passed"] for c in report["comparisons"])


def test_nan_on_one_side_only_is_a_mismatch(example_models):
    model = example_models.onnx("seed_regression")
    x = np.array([[1.0], [np.nan]], np.float32)
    from xverify.runtimes import NumpyRuntime

    out = NumpyRuntime(model, "float32").run({"x": x})
    name = next(iter(out))
    assert np.isnan(out[name][1]).all()
    flipped = out[name].copy()
    flipped[1] = 0.0
    diff = xverify.compare.compare(flipped, out[name], atol=1, rtol=1)
    assert not diff and "one side only" in diff.note


def test_nan_weights_in_a_model_object_are_refused(example_models, models_dir):
    model = onnx.ModelProto()
    model.CopyFrom(example_models.onnx("seed_regression"))
    weight = next(i for i in model.graph.initializer if len(i.raw_data) >= 4)
    weight.raw_data = np.full(len(weight.raw_data) // 4, np.nan, np.float32).tobytes()
    with pytest.raises(xverify.ModelFileError, match="NaN"):
        xverify.check(models_dir / "seed_regression.keras", onnx=model)


def test_a_traced_error_is_said_by_its_own_line_not_in_user_code():
    from xverify.errors import gist

    traced = ValueError(
        'in user code:\n\n    File "x.py", line 3, in forward  *\n        result = model(x)\n\n'
        "    ValueError: Exception encountered when calling Dense.call(): input has rank 1\n"
    )
    assert gist(traced) == "ValueError: Exception encountered when calling Dense.call(): input has rank 1"
    assert gist(KeyError("k")) == "KeyError: 'k'"
    assert gist(RuntimeError()) == "RuntimeError"
