"""ONNX's own backend tests as the judge: every node test case (and the model data the onnx wheel
ships) of an op the engine claims passes in float32 and float64, with ONNX's tolerances.

The cases come from the installed onnx package (``benchmarks/onnx_backend.py`` loads them and prints
the full table). A case may be refused only for an op (or op version) the registry does not claim,
or for one of the attribute values listed in ``REFUSED_CASES`` with the reason.
"""

from __future__ import annotations

import pytest

from benchmarks.onnx_backend import data_cases, node_cases, run_case
from xverify.engine.interpreter import kernel_for, opsets_of

# Cases of claimed ops the engine refuses on purpose, each for a named attribute value.
REFUSED_CASES = {
    **{f"test_batchnorm_{k}_training_mode": "training_mode=1 (training)" for k in ("example", "epsilon")},
    **{
        f"test_training_dropout{k}": "training_mode=True (training, random)"
        for k in ("", "_mask", "_default", "_default_mask", "_zero_ratio", "_zero_ratio_mask")
    },
    **{
        f"test_resize_downsample_{k}_antialias": "antialias=1 when downscaling"
        for k in ("scales_linear", "sizes_linear", "scales_cubic", "sizes_cubic")
    },
    "test_resize_downsample_scales_linear_align_corners": "align_corners with a fractional length: ONNX's reference and ONNX Runtime disagree",
    "test_resize_downsample_scales_cubic_align_corners": "align_corners with a fractional length: ONNX's reference and ONNX Runtime disagree",
    "test_convtranspose_output_shape": "output_shape beyond the full output (negative padding)",
    "test_maxunpool_export_with_output_shape": "output_shape other than the inferred one: ONNX's reference and ONNX Runtime disagree",
    **{
        f"test_attention_4d_with_past_and_present_qk_matmul_bias_{k}_mask_causal": "qk_matmul_output_mode=2 with masked positions: -inf (ONNX) or the lowest float (ORT)"
        for k in ("3d", "4d")
    },
    "test_cast_e8m0_FLOAT_to_FLOAT8E8M0": "the FLOAT8E8M0 type",
    "test_cast_e8m0_FLOAT16_to_FLOAT8E8M0": "the FLOAT8E8M0 type",
}


@pytest.fixture(scope="module")
def cases():
    return node_cases() + data_cases()


def _claimed(case) -> bool:
    """Whether the engine has a kernel for every node of the case at the case's opsets."""
    from xverify.engine.interpreter import iter_nodes

    opsets = opsets_of(case.model)
    return all(kernel_for(n, opsets) is not None for n in iter_nodes(case.model.graph))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_claimed_case_passes(cases, dtype):
    bad, refused = [], []
    for case in cases:
        outcome = run_case(case, dtype)
        if outcome.status in ("failed", "error"):
            bad.append(f"{case.name}: {outcome.status} {outcome.detail}")
        elif outcome.status == "refused" and _claimed(case) and case.name not in REFUSED_CASES:
            refused.append(f"{case.name}: {outcome.detail}")
    assert not bad, f"{len(bad)} wrong results or internal errors:\n" + "\n".join(bad[:20])
    assert not refused, "refused cases of claimed ops:\n" + "\n".join(refused[:20])


def test_listed_refusals_are_still_refusals(cases):
    """A listed case that starts passing must leave the list (and one that errs is caught above)."""
    by_name = {c.name: c for c in cases}
    for name in REFUSED_CASES:
        assert run_case(by_name[name], "float32").status == "refused", name
