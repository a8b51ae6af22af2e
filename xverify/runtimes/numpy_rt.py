"""xverify's own NumPy engine as a runtime (float32 mirror or float64 oracle)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xverify.engine import Interpreter
from xverify.runtimes.contract import Feeds, OnTensor, Outputs, RuntimeSpec


class NumpyRuntime:
    """Run an ONNX model with xverify's NumPy kernels.

    Example::

        outs = NumpyRuntime(onnx_model, dtype="float64").run({"x": x})
    """

    def __init__(self, onnx_model: Any, dtype: str = "float32") -> None:
        self.name = "numpy" if dtype == "float32" else "numpy-float64"
        self.interpreter = Interpreter(onnx_model, dtype)

    def run(self, feeds: Feeds, taps: Sequence[str] | str = ()) -> Outputs:
        """Outputs (and ``taps``: tensor names, or "all") for ``feeds``."""
        return self.interpreter.run(feeds, taps=taps)

    def stream(self, feeds: Feeds, on_tensor: OnTensor) -> Outputs:
        """Outputs for ``feeds``, handing every tensor to ``on_tensor(name, value)`` as it is made."""
        return self.interpreter.run(feeds, on_tensor=on_tensor)


SPEC = RuntimeSpec(
    name="numpy",
    label="the NumPy engine",
    short="numpy",
    taps="onnx",
    streams=True,
    rank=2,
    build=lambda subject: NumpyRuntime(subject.onnx_model, "float32"),
    oracle=lambda subject: NumpyRuntime(subject.onnx_model, "float64"),
)
