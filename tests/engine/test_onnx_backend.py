"""ONNX's own backend tests as the judge: every node test case (and the model data the onnx wheel
ships) of an op the engine claims passes in float32 and float64, with ONNX's tolerances, and every
refused case is out of the engine's scope.

The cases come from the installed onnx package (``benchmarks/onnx_backend.py`` loads them and prints
the full table). A case may be refused only for an op listed in ``OUT_OF_SCOPE`` (strings, training,
randomness, optional types, the ai.onnx.ml and preview domains, image decoding), or, for an op the
engine claims, an attribute value listed in ``OUT_OF_SCOPE_CASES`` (training mode), each with its
reason.
"""

from __future__ import annotations

import pytest

from benchmarks.onnx_backend import (
    OUT_OF_SCOPE,
    OUT_OF_SCOPE_CASES,
    data_cases,
    node_cases,
    refusal_reason,
    run_case,
)
from xverify.engine.interpreter import kernel_for, opsets_of
from xverify.engine.registry import supported_ops


@pytest.fixture(scope="module")
def cases():
    return node_cases() + data_cases()


def _claimed(case) -> bool:
    """Whether the engine has a kernel for every node of the case at the case's opsets."""
    from xverify.engine.interpreter import iter_nodes

    opsets = opsets_of(case.model)
    return all(kernel_for(n, opsets) is not None for n in iter_nodes(case.model.graph))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_case_passes_or_is_out_of_scope(cases, dtype):
    bad, refused = [], []
    for case in cases:
        outcome = run_case(case, dtype)
        if outcome.status in ("failed", "error"):
            bad.append(f"{case.name}: {outcome.status} {outcome.detail}")
        elif outcome.status == "refused" and (
            refusal_reason(outcome.op, case.name) is None
            or (_claimed(case) and case.name not in OUT_OF_SCOPE_CASES)
        ):
            refused.append(f"{case.name}: {outcome.detail}")
    assert not bad, f"{len(bad)} wrong results or internal errors:\n" + "\n".join(bad[:20])
    assert not refused, "refused cases not out of scope:\n" + "\n".join(refused[:20])


def test_out_of_scope_ops_are_not_claimed():
    """An op the engine starts implementing must leave ``OUT_OF_SCOPE``."""
    claimed = {f"{s.domain}.{s.name}" if s.domain else s.name for s in supported_ops()}
    assert "LinearAttention" in claimed
    assert sorted(claimed & set(OUT_OF_SCOPE)) == []


def test_listed_refusals_are_still_refusals(cases):
    """A listed case that starts passing must leave the list (and one that errs is caught above)."""
    by_name = {c.name: c for c in cases}
    for name in OUT_OF_SCOPE_CASES:
        assert run_case(by_name[name], "float32").status == "refused", name
