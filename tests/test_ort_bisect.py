"""The bisection over ONNX Runtime's graph transformers (xverify/ort_bisect.py).

Models are written node by node in the patterns ONNX Runtime fuses (GELU with Erf, LayerNorm from
ReduceMean/Sub/Pow/Sqrt/Div); the verdict on each is checked against ONNX Runtime itself, with the
named transformers disabled, at the same tight tolerance.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import xverify
from xverify.compare import compare
from xverify.ort_bisect import _smallest, sentence
from xverify.runtimes.onnxruntime_rt import make_session

TIGHT = dict(atol=1e-7, rtol=0.0)


def _const(value, name):
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _model(nodes, inits, width=64):
    graph = helper.make_graph(
        nodes,
        "fusable",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, width])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def gelu_model():
    """y = x * (1 + erf(x / sqrt 2)) / 2, which ONNX Runtime fuses into one Gelu node."""
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["e1"]),
        helper.make_node("Mul", ["x", "e1"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["y"]),
    ]
    return _model(nodes, [_const(np.sqrt(2), "sqrt2"), _const(1, "one"), _const(0.5, "half")])


def layer_norm_model(seed=0):
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mu"], axes=[-1]),
        helper.make_node("Sub", ["x", "mu"], ["xc"]),
        helper.make_node("Pow", ["xc", "two"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Div", ["xc", "sd"], ["n"]),
        helper.make_node("Mul", ["n", "g"], ["ng"]),
        helper.make_node("Add", ["ng", "b"], ["y"]),
    ]
    return _model(
        nodes,
        [
            _const(2, "two"),
            _const(1e-3, "eps"),
            _const(rng.standard_normal(64), "g"),
            _const(rng.standard_normal(64), "b"),
        ],
    )


def _inputs(seed=0):
    return {"x": (np.random.default_rng(seed).standard_normal((64, 64)) * 3).astype(np.float32)}


def _ort(model, optimization, disabled=()):
    return make_session(model, optimization, disabled).run(None, _inputs())[0]


def _check(model, directory, **tolerance):
    path = directory / "model.onnx"
    onnx.save(model, str(path))
    return xverify.check(path, inputs=_inputs(), runtimes="numpy,onnxruntime", oracle=False, **tolerance)


def test_gelu_fusion_is_named_and_disabling_it_alone_restores_agreement(tmp_path):
    model = gelu_model()
    report = _check(model, tmp_path, **TIGHT)
    blamed = report.ort_optimizations
    assert blamed is not None and blamed["restored"] and blamed["search"] == "exhaustive"
    assert len(blamed["culprits"]) == 1 and "Gelu" in blamed["culprits"][0]
    assert blamed["outputs"] == ["y"] and blamed["onnxruntime"] == report.versions["onnxruntime"]
    # Checked against ONNX Runtime directly: the fusion alone makes the difference.
    plain = _ort(model, "disabled")
    assert not compare(_ort(model, "all"), plain, **TIGHT)
    assert compare(_ort(model, "all", blamed["culprits"]), plain, **TIGHT)
    assert report.to_dict()["ort_optimizations"] == blamed


def test_layer_norm_culprits_restore_agreement_and_none_alone_suffices(tmp_path):
    """With LayerNormFusionL1 off, SimplifiedLayerNormFusion fuses the normalisation's tail."""
    model = layer_norm_model()
    blamed = _check(model, tmp_path, **TIGHT).ort_optimizations
    assert blamed["restored"] and any("LayerNorm" in c for c in blamed["culprits"])
    plain = _ort(model, "disabled")
    assert compare(_ort(model, "all", blamed["culprits"]), plain, **TIGHT)
    for name in blamed["culprits"]:  # the search says no smaller set exists: none alone suffices
        if len(blamed["culprits"]) > 1:
            assert not compare(_ort(model, "all", [name]), plain, **TIGHT)


def test_no_bisection_when_the_optimized_run_agrees(tmp_path):
    report = _check(gelu_model(), tmp_path)  # default tolerance: the fusion's rounding is within it
    assert report.passed and report.ort_optimizations is None
    assert report.to_dict()["ort_optimizations"] is None


class _FakeProbe:
    def __init__(self, needed):
        self.needed = set(needed)

    def agrees(self, disabled=(), level="all"):
        return self.needed <= set(disabled)


@pytest.mark.parametrize("needed", [{"C"}, {"A", "D"}, {"B", "C", "E"}])
def test_smallest_finds_the_set_that_is_needed(needed):
    found, search = _smallest(["A", "B", "C", "D", "E"], _FakeProbe(needed))
    assert set(found) == needed and search == "exhaustive"


def test_smallest_past_the_exhaustive_limit_is_one_minimal():
    names = [f"T{i}" for i in range(12)]
    found, search = _smallest(names, _FakeProbe({"T3", "T7", "T9", "T11"}))
    assert set(found) == {"T3", "T7", "T9", "T11"} and search == "one-minimal"


def test_sentences_name_the_transformers_or_say_why_not():
    base = {
        "onnxruntime": "1.2.3",
        "outputs": ["y"],
        "first_level": "extended",
        "applied": ["GeluFusionL2", "X"],
        "culprits": ["GeluFusionL2"],
        "restored": True,
        "search": "exhaustive",
        "sessions": 5,
    }
    assert "disabling GeluFusionL2 restores agreement on y" in sentence(base)
    assert "1.2.3" in sentence(base) and "level extended" in sentence(base)
    lost = dict(base, culprits=[], restored=False)
    assert "does not restore agreement" in sentence(lost) and "GeluFusionL2, X" in sentence(lost)
    assert "agreed when rerun" in sentence(dict(lost, first_level=None))


def test_a_converted_cnn_at_zero_tolerance(example_models, tmp_path):
    """A model the bisection was not written for: small_cnn's optimized rounding, blamed exactly."""
    exact = dict(atol=0.0, rtol=0.0)
    model = example_models.onnx("small_cnn")
    path = tmp_path / "small_cnn.onnx"
    onnx.save(model, str(path))
    name = model.graph.input[0].name
    feeds = {name: np.random.default_rng(1).standard_normal((8, 16, 16, 3)).astype(np.float32)}
    report = xverify.check(path, inputs=feeds, runtimes="numpy,onnxruntime", oracle=False, **exact)
    blamed = report.ort_optimizations
    if blamed is None:
        pytest.skip("this ONNX Runtime build rounds small_cnn identically with and without fusions")
    assert blamed["restored"] and blamed["culprits"]
    assert set(blamed["culprits"]) <= set(blamed["applied"])
    plain = make_session(model, "disabled").run(None, feeds)[0]
    fixed = make_session(model, "all", blamed["culprits"]).run(None, feeds)[0]
    assert compare(fixed, plain, **exact)
