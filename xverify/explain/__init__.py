"""The step-by-step arithmetic of one input: the hand calculation a learner does from get_weights().

Dense layers and elementwise activation layers are recomputed unit by unit in float64 NumPy; every
other layer (Conv2D, pooling, BatchNormalization, LSTM, ...) is summarized by its formula in words
and its output as computed by Keras itself, so an explanation never fails on a layer it cannot spell
out. The same pass is repeated with the hidden activations skipped, the classic mistake.

Modules: ``activations`` (the NumPy table), ``layers`` (one layer spelled out by hand),
``formulas`` (the others in words), ``sample`` (the input), ``walk`` (the pass through the model),
``results`` (the values returned) and ``render`` (text, CSV and Excel). Keras is imported only when
a model is explained, never on import.
"""

from xverify.explain.activations import ACTIVATIONS
from xverify.explain.diagnose import Candidate, Diagnosis, Mistake
from xverify.explain.layers import MAX_UNITS, SHOWN  # noqa: F401  (public before the split)
from xverify.explain.results import Explanation, LayerSummary, Step, UnitDetail, UnitRow
from xverify.explain.walk import explain

__all__ = [
    "ACTIVATIONS",
    "Candidate",
    "Diagnosis",
    "Explanation",
    "LayerSummary",
    "Mistake",
    "Step",
    "UnitDetail",
    "UnitRow",
    "explain",
]
