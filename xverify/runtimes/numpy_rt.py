"""xverify's own NumPy engine as a runtime (float32 mirror or float64 oracle)."""

from __future__ import annotations

import numpy as np

from xverify.engine import Interpreter


class NumpyRuntime:
    """Run an ONNX model with xverify's NumPy kernels.

    Example::

        outs = NumpyRuntime(onnx_model, dtype="float64").run({"x": x})
    """

    def __init__(self, onnx_model, dtype: str = "float32"):
        self.name = "numpy" if dtype == "float32" else "numpy-float64"
        self.interpreter = Interpreter(onnx_model, dtype)

    def run(self, feeds: dict, taps=(), on_tensor=None) -> dict[str, np.ndarray]:
        """Outputs (and ``taps``: tensor names, or "all") for ``feeds``."""
        return self.interpreter.run(feeds, taps=taps, on_tensor=on_tensor)
