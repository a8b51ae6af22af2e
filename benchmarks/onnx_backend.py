"""ONNX's own backend test suite as the judge of xverify's NumPy engine.

Runs, through ``Interpreter(model, "float32")`` and ``Interpreter(model, "float64")``:

* ``node``: the node test cases the installed onnx wheel regenerates
  (``onnx.backend.test.case.node.collect_testcases()``: a model, inputs and expected outputs each);
* ``data``: the model data the wheel ships under ``onnx/backend/test/data/{pytorch-converted,
  pytorch-operator,simple}`` (``model.onnx`` and ``test_data_set_*/{input,output}_*.pb``);
* ``light``: ``onnx/backend/test/data/light/light_*.onnx`` fed as ONNX's runner feeds them
  (``arange(n) / n`` in the input's shape) against the stored ``*_output_0.pb``.

Outputs are compared as ONNX's backend runner compares them: same shape, the same dtype in float32
(in float64 the oracle's floats are float64 by design, so only the kind is checked), and
``np.testing.assert_allclose`` with the case's own ``rtol``/``atol`` (1e-3 / 1e-7 by default).
Each case ends as ``passed``, ``refused`` (an ``UnsupportedOpError``, by op), ``failed`` (a wrong
result) or ``error`` (any other exception: an internal error of the engine).

Usage::

    python benchmarks/onnx_backend.py                 # node + data + light, float32 and float64
    python benchmarks/onnx_backend.py --suite node --dtype float32 -v
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from xverify.engine import Interpreter
from xverify.errors import UnsupportedOpError

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
DATA_KINDS = ("pytorch-converted", "pytorch-operator", "simple")
RTOL, ATOL = 1e-3, 1e-7  # onnx.backend.test.case.test_case defaults (its runner uses the case's)

# Ops outside the engine's scope (a verifier of trained models' inference), refused in every case,
# with the reason. tests/engine/test_onnx_backend.py allows no other refusal (besides the named
# attribute values it lists for claimed ops).
_TRAINING = "training"
OUT_OF_SCOPE = {
    **dict.fromkeys(
        ("RegexFullMatch", "StringConcat", "StringNormalizer", "StringSplit", "TfIdfVectorizer"),
        "strings (text processing)",
    ),
    **dict.fromkeys(("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"), f"{_TRAINING} (losses)"),
    **dict.fromkeys(
        (f"ai.onnx.preview.training.{name}" for name in ("Adagrad", "Adam", "Momentum", "Gradient")),
        f"{_TRAINING} (optimizers, gradients)",
    ),
    **dict.fromkeys(("Bernoulli", "RandomUniformLike"), "randomness (no reproducible output)"),
    **dict.fromkeys(("Optional", "OptionalGetElement", "OptionalHasElement"), "optional types"),
    **dict.fromkeys(
        (
            f"ai.onnx.ml.{name}"
            for name in ("ArrayFeatureExtractor", "Binarizer", "LabelEncoder", "TreeEnsemble")
        ),
        "the ai.onnx.ml domain (classical ML)",
    ),
    "ai.onnx.preview.FlexAttention": "the ai.onnx.preview domain (ops not yet in a released opset)",
    "ImageDecoder": "encoded image bytes (data loading)",
}
# Cases of ops the engine claims, refused for an attribute value out of scope.
OUT_OF_SCOPE_CASES = {
    **{f"test_batchnorm_{k}_training_mode": f"{_TRAINING} (training_mode=1)" for k in ("example", "epsilon")},
    **{
        f"test_training_dropout{k}": f"{_TRAINING} (training_mode=True, random)"
        for k in ("", "_mask", "_default", "_default_mask", "_zero_ratio", "_zero_ratio_mask")
    },
}


def refusal_reason(op: str, case_name: str) -> str | None:
    """Why a refused case is out of scope (``op`` as ``run_case`` names it), or None if it is not."""
    if case_name in OUT_OF_SCOPE_CASES:
        return OUT_OF_SCOPE_CASES[case_name]
    reasons = {OUT_OF_SCOPE.get(o) for o in op.split(", ")}
    return None if None in reasons else "; ".join(sorted(reasons))


@dataclass
class Case:
    """One model with data sets of (inputs by name, expected outputs in graph order)."""

    name: str
    model: onnx.ModelProto
    data_sets: list
    rtol: float = RTOL
    atol: float = ATOL


@dataclass
class Outcome:
    name: str
    dtype: str
    status: str  # passed | refused | failed | error
    op: str = ""  # for refusals: the op refused
    detail: str = ""


@dataclass
class Table:
    outcomes: list = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


def _normalize(value):
    """A case's value as arrays: its data sets may hold TensorProtos (as ONNX's runner notes)."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    return value


def node_cases() -> list[Case]:
    from onnx.backend.test.case.node import collect_testcases

    cases = []
    for tc in collect_testcases():
        names = [i.name for i in tc.model.graph.input]
        sets = [
            (dict(zip(names, _normalize(list(ins)))), _normalize(list(outs))) for ins, outs in tc.data_sets
        ]
        cases.append(Case(tc.name, tc.model, sets, tc.rtol, tc.atol))
    return cases


def _read_value(path: str, type_proto: onnx.TypeProto):
    """A tensor, sequence or optional stored as ONNX's runner stores them."""
    with open(path, "rb") as f:
        raw = f.read()
    if type_proto.HasField("sequence_type"):
        seq = onnx.SequenceProto()
        seq.ParseFromString(raw)
        return [numpy_helper.to_array(t) for t in seq.tensor_values]
    if type_proto.HasField("optional_type"):
        opt = onnx.OptionalProto()
        opt.ParseFromString(raw)
        return numpy_helper.to_optional(opt)
    tensor = onnx.TensorProto()
    tensor.ParseFromString(raw)
    return numpy_helper.to_array(tensor)


def data_cases(kinds=DATA_KINDS) -> list[Case]:
    cases = []
    for kind in kinds:
        for model_dir in sorted((DATA / kind).iterdir()):
            model = onnx.load(str(model_dir / "model.onnx"))
            inits = {i.name for i in model.graph.initializer}
            inputs = [i for i in model.graph.input if i.name not in inits]
            sets = []
            for data_dir in sorted(glob.glob(str(model_dir / "test_data_set*"))):
                n_in = len(glob.glob(os.path.join(data_dir, "input_*.pb")))
                n_out = len(glob.glob(os.path.join(data_dir, "output_*.pb")))
                feeds = {
                    inputs[i].name: _read_value(os.path.join(data_dir, f"input_{i}.pb"), inputs[i].type)
                    for i in range(n_in)
                }
                outs = [
                    _read_value(os.path.join(data_dir, f"output_{i}.pb"), model.graph.output[i].type)
                    for i in range(n_out)
                ]
                sets.append((feeds, outs))
            cases.append(Case(f"{kind}/{model_dir.name}", model, sets))
    return cases


def light_cases() -> list[Case]:
    cases = []
    for path in sorted((DATA / "light").glob("light_*.onnx")):
        model = onnx.load(str(path))
        inits = {i.name for i in model.graph.initializer}
        feeds = {}
        for x in model.graph.input:
            if x.name in inits:
                continue
            shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in x.type.tensor_type.shape.dim)
            n = int(np.prod(shape))
            feeds[x.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
        expected = numpy_helper.to_array(onnx.load_tensor(str(path.with_name(path.stem + "_output_0.pb"))))
        cases.append(Case(f"light/{path.stem}", model, [(feeds, [expected])]))
    return cases


def _compare(got, want, rtol, atol, oracle: bool) -> None:
    """ONNX's ``assert_similar_outputs``, with the float64 oracle allowed its float64 floats."""
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), "sequence length differs"
        for g, w in zip(got, want):
            _compare(g, w, rtol, atol, oracle)
        return
    if want is None:
        assert got is None, "expected an empty optional"
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    if want.dtype == object:
        np.testing.assert_array_equal(got, want)
        return
    if (oracle and want.dtype.kind == "f") or want.dtype.name == "bfloat16":
        assert got.dtype.kind == "f" or got.dtype.name == "bfloat16", f"dtype {got.dtype}"
    else:
        assert got.dtype == want.dtype, f"dtype {got.dtype} != {want.dtype}"
    if want.dtype.name == "bfloat16" or got.dtype.name == "bfloat16":
        rtol = max(rtol, 2**-6)
    if oracle and want.dtype in (np.float16, np.float32) and want.size:
        # The expected values carry the rounding of their type at every step, the oracle's none:
        # 4 ulps of the expected type, relative to each value and to the output's scale.
        eps = 4 * float(np.finfo(want.dtype).eps)
        scale = float(np.max(np.abs(want[np.isfinite(want)]), initial=0))
        rtol, atol = max(rtol, eps if want.dtype == np.float16 else rtol), max(atol, eps * scale)
    if want.dtype.kind not in "biuf" or (
        want.dtype.kind == "f" and got.dtype != want.dtype
    ):  # float8 / float4 / int4 types from ml_dtypes
        got, want = got.astype(np.float64), want.astype(np.float64)
    elif want.dtype.name == "bfloat16":
        got, want = got.astype(np.float32), want.astype(np.float32)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


_OP_IN_MESSAGE = re.compile(r"^(?:op\(s\) )?([A-Za-z0-9_.]+)[:,( ]")


def _refused_op(exc: UnsupportedOpError, model: onnx.ModelProto) -> str:
    ops = getattr(exc, "ops", None)
    if ops:
        return ", ".join(ops)
    match = _OP_IN_MESSAGE.match(str(exc))
    if match:
        return match.group(1)
    return model.graph.node[0].op_type if len(model.graph.node) == 1 else "?"


def run_case(case: Case, dtype: str) -> Outcome:
    try:
        interp = Interpreter(case.model, dtype)
        for feeds, expected in case.data_sets:
            got = interp.run(feeds)
            for name, want in zip(interp.output_names, expected):
                _compare(got[name], want, case.rtol, case.atol, dtype == "float64")
    except UnsupportedOpError as exc:
        return Outcome(case.name, dtype, "refused", _refused_op(exc, case.model), str(exc))
    except AssertionError as exc:
        return Outcome(case.name, dtype, "failed", detail=str(exc).strip().splitlines()[0:6])
    except Exception as exc:
        return Outcome(case.name, dtype, "error", detail=f"{type(exc).__name__}: {exc}")
    return Outcome(case.name, dtype, "passed")


def run_suite(cases: list[Case], dtypes) -> Table:
    table = Table()
    for case in cases:
        for dtype in dtypes:
            table.outcomes.append(run_case(case, dtype))
    return table


def print_table(title: str, table: Table, verbose: bool) -> None:
    print(f"\n## {title}")
    by_dtype = defaultdict(list)
    for o in table.outcomes:
        by_dtype[o.dtype].append(o)
    print(f"{'dtype':8} {'cases':>6} {'passed':>7} {'refused':>8} {'failed':>7} {'error':>6}")
    for dtype, outs in by_dtype.items():
        c = Counter(o.status for o in outs)
        print(f"{dtype:8} {len(outs):6} {c['passed']:7} {c['refused']:8} {c['failed']:7} {c['error']:6}")
    refused = defaultdict(set)
    for o in table.outcomes:
        if o.status == "refused":
            refused[o.op].add(o.name)
    if refused:
        print("refused by op (cases, reason):")
        for op, names in sorted(refused.items()):
            reasons = {refusal_reason(op, name) or "NOT out of scope" for name in names}
            print(f"  {op} ({len(names)}): {'; '.join(sorted(reasons))}")
    for o in table.outcomes:
        if o.status in ("failed", "error") or (verbose and o.status == "refused"):
            print(f"  {o.status:7} {o.dtype} {o.name}: {o.op} {o.detail}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="node,data,light")
    parser.add_argument("--dtype", default="float32,float64")
    parser.add_argument("-k", default="", help="only cases whose name contains this")
    parser.add_argument("-v", action="store_true", help="list refused cases too")
    args = parser.parse_args(argv)
    loaders = {"node": node_cases, "data": data_cases, "light": light_cases}
    bad = 0
    for suite in args.suite.split(","):
        start = time.perf_counter()
        cases = [c for c in loaders[suite]() if args.k in c.name]
        table = run_suite(cases, args.dtype.split(","))
        print_table(f"{suite}: {len(cases)} cases, {time.perf_counter() - start:.1f} s", table, args.v)
        bad += table.count("failed") + table.count("error")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
