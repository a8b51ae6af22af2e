"""pytest helpers: ``assert_equivalent`` fails a test with the first divergence in its message.

Example::

    from xverify.testing import assert_equivalent

    def test_export_matches_keras():
        assert_equivalent("model.keras", onnx="model.onnx", atol=1e-5)
"""

from __future__ import annotations

from typing import Any

from xverify.check import check
from xverify.report.model import CheckReport, first_divergence_lines


class NotEquivalentError(AssertionError):
    """The ONNX model does not compute what the model computes; ``report`` holds the check."""

    def __init__(self, message: str, report: CheckReport):
        super().__init__(message)
        self.report = report


def assert_equivalent(model: Any, onnx: Any = None, **options: Any) -> CheckReport:
    """Check ``model`` against its ONNX conversion (or ``onnx``) and fail if they differ.

    Args:
        model: what ``xverify.check`` takes: a Keras model object or a model file.
        onnx: an ONNX file or ModelProto to check instead of converting the model.
        **options: any other ``xverify.check`` argument (inputs, samples, seed, atol, rtol,
            runtimes, layers, opset, oracle, ort_optimized, cache, unsafe).

    Returns:
        The passing CheckReport.

    Raises:
        NotEquivalentError (an AssertionError): the message lists the failing comparisons and
        the first divergent layer; ``.report`` is the whole CheckReport.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    report = check(model, onnx=onnx, **options)
    if not report.passed:
        raise NotEquivalentError(failure_message(report), report)
    return report


def failure_message(report: CheckReport) -> str:
    """What a failing test prints: tolerance, failing comparisons, first divergence, ORT blame."""
    tol = report.tolerance
    lines = [
        f"ONNX model is not equivalent to {report.model.path or 'the Keras model'} "
        f"(atol {tol['atol']:g}, rtol {tol['rtol']:g}, {report.inputs.samples} samples):"
    ]
    lines += [f"  {line}" for line in report.failures() if not line.startswith("first divergence")]
    if report.first_divergence:
        lines.append("First divergence:")
        lines += [f"  {line}" for line in first_divergence_lines(report.first_divergence)]
    if report.ort_optimizations:
        from xverify.ort_bisect import sentence

        lines.append(f"ONNX Runtime optimization to blame: {sentence(report.ort_optimizations)}")
    return "\n".join(lines)
