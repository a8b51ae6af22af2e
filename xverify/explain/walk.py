"""Running a model layer by layer: each layer spelled out by hand, or its output taken from Keras.

The same walk is repeated with the hidden activations skipped, the classic mistake, so the
explanation can show what that mistake would have produced.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from xverify.explain.formulas import formula
from xverify.explain.layers import as_list, first, shape, spell_out, summarize
from xverify.explain.results import Explanation, LayerSummary
from xverify.explain.sample import parse_sample


def explain(model, x) -> Explanation:
    """Recompute one input's forward pass by hand from the layers' weights and check it against TF.

    Args:
        model: a Keras model, or the path of a .keras/.h5 file (loaded in safe mode).
        x: the values of one sample: a scalar, a list, a numpy array or a comma-separated string,
            as many values as the model's single input holds per sample.

    Returns:
        An ``Explanation``; ``.text()`` is the walk-through, ``.rows()`` the table of units.
    """
    path = None
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from xverify.load import load_keras  # imports Keras: only when a model is explained

        path = os.fsdecode(model)
        model = load_keras(path)
    sample = parse_sample(model, x, path)
    tensor = model.inputs[0]
    feed = sample.astype(tensor.dtype)
    tf_out = np.asarray(first(model(_structured(model, feed), training=False)), np.float64)
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    try:
        taps = _taps(model, layers, feed)
        summaries, steps, output = _walk(model, layers, sample, taps, skip=False)
    except (ValueError, KeyError):  # a layer used twice has no single input and output to tap
        whole = LayerSummary(model.name, type(model).__name__, "the whole model, computed by Keras "
                             "(it reuses a layer, so its layers cannot be followed one by one)",
                             shape(tensor), shape(model.outputs[0]), tf_out, False)
        unknown = np.full_like(tf_out, np.nan)
        return Explanation(model.name, sample, (), (whole,), tf_out, tf_out, unknown, 0.0)
    try:
        without = _walk(model, layers, sample, None, skip=True)[2]
    except Exception:  # a layer Keras cannot call on its own (masks, custom kwargs): say so, go on
        without = np.full_like(output, np.nan)
    return Explanation(model.name, sample, tuple(steps), tuple(summaries), output, tf_out, without,
                       _max_abs_diff(output, tf_out))


def _structured(model, feed):
    """``feed`` as the model declared its inputs: a list of one when built from ``[Input]``."""
    try:
        return [feed] if isinstance(model.input, list) else feed
    except AttributeError:  # a Sequential built with .build() has inputs but no called .input
        return feed


def _taps(model, layers, feed) -> dict:
    """Every layer's own Keras output for ``feed``, keyed by the id of its symbolic tensor."""
    import keras

    tensors = [t for layer in layers for t in as_list(layer.output)]
    tap_model = keras.Model(model.inputs[0], tensors)
    values = as_list(tap_model(feed, training=False))
    return {id(t): np.asarray(v, np.float64) for t, v in zip(tensors, values)}


def _walk(model, layers, sample, taps, skip):
    """One forward pass: spelled-out layers by hand, others from ``taps`` (or Keras when None).

    With ``skip`` every activation spelled out here is skipped except the last layer's.
    """
    values = {id(model.inputs[0]): sample}
    summaries, steps = [], []
    last = {id(t) for t in model.outputs}
    for layer in layers:
        ins = [values[id(t)] for t in as_list(layer.input)]
        outs = as_list(layer.output)
        is_last = any(id(t) in last for t in outs)
        summary, layer_steps = spell_out(layer, ins, skip and not is_last)
        if summary is None:  # not spelled out: Keras' own result
            results = [taps[id(t)] for t in outs] if taps else _keras_call(layer, ins)
            summary = summarize(layer, formula(layer), results[0], False)
            values.update({id(t): r for t, r in zip(outs, results)})
        else:
            values[id(outs[0])] = summary.output
            if taps:
                tf_diff = _max_abs_diff(summary.output, taps[id(outs[0])])
                summary = dataclasses.replace(summary, tf_max_abs_diff=tf_diff)
        summaries.append(summary)
        steps.extend(layer_steps)
    return summaries, steps, values[id(model.outputs[0])]


def _keras_call(layer, ins) -> list:
    """Call one layer on its own (no taps: the walk with activations skipped)."""
    fed = [np.asarray(v, t.dtype) for v, t in zip(ins, as_list(layer.input))]
    result = layer(fed if isinstance(layer.input, (list, tuple)) else fed[0])
    return [np.asarray(r, np.float64) for r in as_list(result)]


def _max_abs_diff(ours, theirs) -> float:
    return float(np.max(np.abs(ours - theirs), initial=0.0))  # initial: 0.0 for an empty output
