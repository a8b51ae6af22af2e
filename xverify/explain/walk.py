"""Explaining one input: the model's graph walked by hand, checked against TensorFlow.

The same walk is repeated with the hidden activations skipped, the classic mistake, so the
explanation can show what that mistake would have produced.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from xverify.explain.forward import Tweak, Variant, forward, keras_pass
from xverify.explain.graph import graph_of
from xverify.explain.layers import first
from xverify.explain.results import Explanation, LayerSummary
from xverify.explain.sample import parse_sample
from xverify.explain.units import detail


def explain(model, x, unit=None) -> Explanation:
    """Recompute one input's forward pass by hand from the layers' weights and check it against TF.

    Args:
        model: a Keras model (functional, Sequential built or not, nesting other models), or the
            path of a .keras/.h5 file (loaded in safe mode).
        x: the values of one sample: a scalar, a list, a numpy array or a comma-separated string,
            as many values as the model's single input holds per sample.
        unit: an output element (a flat index, or one index per axis) to spell out in every layer
            Keras computes that ``units`` covers (Conv, pooling, normalization, Embedding, RNNs).

    Returns:
        An ``Explanation``; ``.text()`` is the walk-through, ``.rows()`` the table of units,
        ``.diagnose(mine)`` finds the mistake behind a number computed by hand.
    """
    path = None
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from xverify.load import load_keras  # imports Keras: only when a model is explained

        path = os.fsdecode(model)
        model = load_keras(path)
    sample = parse_sample(model, x, path)
    graph = graph_of(model)
    feed = sample.astype(model.inputs[0].dtype if graph else np.float32)
    tf_out = np.asarray(first(model(_structured(model, feed), training=False)), np.float64)
    if graph is None:  # a subclassed model: its call() is Python code with no graph to follow
        whole = LayerSummary(
            model.name,
            type(model).__name__,
            "the whole model, computed by Keras "
            "(a subclassed model: its call() is Python code, not a graph of layer "
            "calls, so its layers cannot be followed one by one)",
            sample.shape,
            tf_out.shape,
            tf_out,
            False,
        )
        unknown = np.full_like(tf_out, np.nan)
        return Explanation(model.name, sample, (), (whole,), tf_out, tf_out, unknown, 0.0)
    taps = keras_pass(graph, feed)
    hand = forward(graph, sample, taps)
    summaries = [
        _checked(s, taps[c.outputs[0]]) if s.by_hand else s for s, c in zip(hand.summaries, graph.calls)
    ]
    try:
        skipped = forward(graph, sample, taps, skip_hidden(graph, hand), hand)
        without = skipped.output
    except Exception:  # a layer Keras cannot call on its own (custom kwargs): say so, go on
        skipped, without = None, np.full_like(hand.output, np.nan)
    return Explanation(
        model.name,
        sample,
        tuple(hand.steps),
        tuple(summaries),
        hand.output,
        tf_out,
        without,
        _max_abs_diff(hand.output, tf_out),
        model=model,
        graph=graph,
        taps=taps,
        hand=hand,
        skipped=skipped,
        units=_details(graph, hand, taps, unit) if unit is not None else (),
    )


def skip_hidden(graph, hand) -> Variant:
    """Every activation spelled out by hand skipped, except in the calls that give an output."""
    outputs = set(graph.output_keys)
    tweaks = tuple(
        (i, Tweak(skip_activation=True))
        for i, (call, summary) in enumerate(zip(graph.calls, hand.summaries))
        if summary.activation and not outputs & set(call.outputs)
    )
    return Variant(tweaks)


def _details(graph, hand, taps, unit) -> tuple:
    """``--unit``: the element ``unit`` of every layer ``units`` can spell out, where it fits."""
    if isinstance(unit, str):
        spec = [int(i) for i in unit.replace(",", " ").split()]
    else:
        spec = [int(i) for i in np.ravel(unit)]
    found = []
    for call in graph.calls:
        d = detail(call, [hand.values[k] for k in call.inputs], taps[call.outputs[0]], spec)
        found += [d] if d is not None else []
    return tuple(found)


def _checked(summary, keras_value) -> LayerSummary:
    return dataclasses.replace(summary, tf_max_abs_diff=_max_abs_diff(summary.output, keras_value))


def _structured(model, feed):
    """``feed`` as the model declared its inputs: a list of one when built from ``[Input]``."""
    try:
        return [feed] if isinstance(model.input, list) else feed
    except AttributeError:  # a Sequential built with .build() has inputs but no called .input
        return feed


def _max_abs_diff(ours, theirs) -> float:
    return float(np.max(np.abs(ours - theirs), initial=0.0))  # initial: 0.0 for an empty output
