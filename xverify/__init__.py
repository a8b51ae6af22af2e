"""xverify: prove an exported ONNX model computes what the trained Keras model computes.

Example::

    import xverify
    report = xverify.check("model.keras")
    report.raise_if_failed()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Submodules named like public functions are imported first, so that importing them later cannot
# replace the function on the package with the module (they import their heavy libraries lazily).
import xverify.convert as _convert_module
import xverify.explain as _explain_module
import xverify.extract as _extract_module
from xverify import golden, runtimes
from xverify.check import check
from xverify.compare import TensorDiff
from xverify.errors import (
    ConversionError,
    InputDataError,
    MismatchError,
    MissingDependencyError,
    ModelFileError,
    ResourceLimitError,
    UnsupportedOpError,
    UsageError,
    XverifyError,
)
from xverify.report.model import CheckReport, LayerDiff
from xverify.suggest import suggest_tolerance

if TYPE_CHECKING:
    import onnx

    from xverify.explain.results import Explanation
    from xverify.extract.results import LayerWeights

__version__ = "0.1.0"


def convert(model: Any, opset: int | None = None) -> onnx.ModelProto:
    """Convert a Keras model (or a path to one) to an ``onnx.ModelProto``; see ``xverify.convert``."""
    from xverify.load import load_keras

    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = load_keras(model)
    return _convert_module.convert(model, opset)


def extract_weights(model_or_onnx: Any) -> tuple[LayerWeights, ...]:
    """Each Keras layer's weights read back from the ONNX initializers; see ``xverify.extract``."""
    return _extract_module.extract_weights(model_or_onnx)


def explain(model: Any, x: Any, unit: Any = None) -> Explanation:
    """The step-by-step arithmetic of one input; see ``xverify.explain``."""
    return _explain_module.explain(model, x, unit)


__all__ = [
    "CheckReport",
    "ConversionError",
    "InputDataError",
    "LayerDiff",
    "MismatchError",
    "MissingDependencyError",
    "ModelFileError",
    "ResourceLimitError",
    "TensorDiff",
    "UnsupportedOpError",
    "UsageError",
    "XverifyError",
    "__version__",
    "check",
    "convert",
    "explain",
    "extract_weights",
    "golden",
    "runtimes",
    "suggest_tolerance",
]
