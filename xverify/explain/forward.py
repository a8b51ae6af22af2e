"""One forward pass through the flattened graph: by hand where a layer can be spelled out, by Keras
elsewhere; optionally with the mistakes a hand calculation makes (a ``Variant``).

Keras' own pass (``keras_pass``) runs the same calls node by node in float32, so every layer's Keras
output is known (a mask an Embedding sets travels with its tensor). The hand pass takes a layer it
cannot spell out from that Keras pass while its inputs are unchanged, and calls the layer on the
changed values otherwise (a variant).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xverify.explain.formulas import formula
from xverify.explain.layers import round16, spell_out, summarize


@dataclass(frozen=True)
class Tweak:
    """The mistakes made at one layer call (all False: the layer as Keras computes it)."""

    skip_activation: bool = False  # a = z
    no_bias: bool = False  # z = x·W
    transposed: bool = False  # the kernel's numbers read in the other order (W.T for a square W)
    reversed_units: bool = False  # the layer's units handed on in reverse order
    ignored: bool = False  # a normalization or rescaling layer left out: output = input


@dataclass(frozen=True)
class Variant:
    """A whole pass's mistakes: tweaks by call index, float16 rounding, a scaled input."""

    tweaks: tuple = ()  # (call index, Tweak) pairs
    float16: bool = False
    input_scale: float = 1.0

    def tweak(self, index: int) -> Tweak:
        return dict(self.tweaks).get(index, _NONE)


_NONE = Tweak()


@dataclass
class Pass:
    """What a pass computed: one summary per call, the spelled-out units, every tensor's value."""

    summaries: list
    steps: list
    values: dict = field(repr=False)
    output: np.ndarray


def keras_pass(graph, feed) -> dict:
    """Every tensor's value as Keras computes it, call by call (float64 copies), keyed like graph."""
    values = {graph.input_key: feed}
    for call in graph.calls:
        results = call_keras(call, [values[k] for k in call.inputs], cast=False)
        values.update(zip(call.outputs, results))
    return {k: np.asarray(v, np.float64) for k, v in values.items()}


def call_keras(call, ins, cast=True) -> list:
    """Call one layer on ``ins`` the way its node did (same arguments, training=False)."""
    tensors = call.node.input_tensors
    if cast:
        ins = [np.asarray(v, t.dtype) for v, t in zip(ins, tensors)]
    args, kwargs = call.node.arguments.fill_in({id(t): v for t, v in zip(tensors, ins)})
    if "training" in getattr(call.layer, "_call_context_args", ()):
        kwargs["training"] = False
    result = call.layer(*args, **kwargs)
    import keras

    flat = keras.tree.flatten(result)
    return flat if not cast else [np.asarray(r, np.float64) for r in flat]


def forward(graph, sample, taps, variant=Variant(), baseline: Pass | None = None) -> Pass:
    """One pass by hand; Keras-computed layers from ``taps`` where their inputs are unchanged.

    Args:
        graph: the model's flattened graph.
        sample: the input (one sample, float64).
        taps: ``keras_pass`` values.
        variant: the mistakes to make; the default makes none.
        baseline: the pass without mistakes, to tell which inputs a variant changed.
    """
    x = sample * variant.input_scale
    values = {graph.input_key: round16(x, variant.float16)}
    summaries, steps = [], []
    for index, call in enumerate(graph.calls):
        tweak = variant.tweak(index)
        ins = [values[k] for k in call.inputs]
        if tweak.ignored:
            summary, unit_steps = summarize(call, "left out", ins[0], True), []
        else:
            summary, unit_steps = spell_out(call, ins, tweak, variant.float16)
        if summary is None:
            results = _from_keras(call, ins, taps, baseline)
            results = [round16(r, variant.float16) for r in results]
            summary = summarize(call, formula(call.layer), results[0], False)
            values.update(zip(call.outputs, results))
        else:
            values[call.outputs[0]] = summary.output
        summaries.append(summary)
        steps.extend(unit_steps)
    return Pass(summaries, steps, values, values[graph.output_keys[0]])


def _from_keras(call, ins, taps, baseline) -> list:
    unchanged = baseline is None or all(
        np.array_equal(v, baseline.values[k]) for v, k in zip(ins, call.inputs)
    )
    if unchanged:
        return [taps[k] for k in call.outputs]
    return call_keras(call, ins)
