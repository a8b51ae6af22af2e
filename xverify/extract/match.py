"""``match_weights``: every Keras weight found among the ONNX initializers, by value.

Each layer's weights are turned into groups of alternatives (each alternative a list of joints, see
``joints.py``); the alternative whose joints are found best is recorded, and per weight the best record
across groups wins: passed first, then found, then the smallest difference.
"""

from __future__ import annotations

import math

import numpy as np

from xverify.extract.batchnorm import bn_groups
from xverify.extract.forms import activation_forms, close, forms, max_diff
from xverify.extract.joints import Context, Joint, weight_names
from xverify.extract.normalization import UNUSED_AT_INFERENCE, normalization_groups
from xverify.extract.recurrent import rnn_groups
from xverify.extract.results import LayerWeights, WeightMatch, WeightReport

# Layers whose weights tf2onnx merges or recomputes, beyond the layouts of ``forms``.
_SPECIAL = {
    "BatchNormalization": bn_groups,
    "Normalization": normalization_groups,
    "LSTM": rnn_groups,
    "GRU": rnn_groups,
    "SimpleRNN": rnn_groups,
    "Bidirectional": rnn_groups,
}


def _unused(layer) -> tuple:
    return UNUSED_AT_INFERENCE.get(type(layer).__name__, ())


def _generic_groups(ctx: Context, li: int) -> list:
    layer, cls = ctx.layers[li], type(ctx.layers[li]).__name__
    groups = []
    for wi, (name, value) in enumerate(zip(weight_names(layer), ctx.values[li])):
        if name in _unused(layer):
            continue
        groups.append(
            [
                [
                    Joint(
                        ((li, wi),),
                        form.to_onnx(value),
                        lambda a, f=form: [f.to_keras(a)],
                        (form.label,),
                        form.derived,
                    )
                ]
                for form in forms(cls, name, value.shape) + activation_forms(layer, name)
            ]
        )
    return groups


def _groups(ctx: Context, li: int) -> list:
    special = _SPECIAL.get(type(ctx.layers[li]).__name__)
    return _generic_groups(ctx, li) + (special(ctx, li) if special else [])


def _score(evaluated, own: set) -> tuple:
    """Rank one alternative: all within tolerance, then how many, then how many were found among
    the initializers the layer's own nodes read (a BatchNormalization with default statistics has
    the same scale as another one, whose Mul is elsewhere; its own Conv holds it folded)."""
    ok = [(f is not None and f[2]) or (f is None and not np.any(j.expected)) for j, f in evaluated]
    found = [f for _, f in evaluated if f is not None]
    worst = max((max_diff(f[1], j.expected) for j, f in evaluated if f is not None), default=0.0)
    mine = sum(f[0] in own for f in found)
    return all(ok) and bool(found or ok), sum(ok), mine, len(found), -worst


def _key(match: WeightMatch) -> tuple:
    return match.passed, match.onnx_initializer is not None, -match.max_abs_diff


def _record(ctx: Context, joint: Joint, found, entries: dict) -> None:
    if found is None:
        if not np.any(joint.expected):  # tf2onnx removes all-zero biases
            for li, wi in joint.targets:
                _put(ctx, entries, li, wi, None, "eliminated: all zeros", 0.0, True, ctx.values[li][wi])
        return
    name, array, ok = found
    atol, rtol = ctx.tolerance(joint)
    stored = ctx.inits[name].shape
    suffix = f" (stored as {tuple(stored)})" if stored != joint.expected.shape else ""
    for (li, wi), value, label in zip(joint.targets, joint.split(array), joint.labels):
        keras = ctx.values[li][wi]
        if value is None:
            diff, passed = max_diff(array, joint.expected), ok
        else:
            value = np.asarray(value).reshape(keras.shape)
            diff, passed = max_diff(value, keras), close(value, keras, atol, rtol)
        _put(ctx, entries, li, wi, name, label.replace("{init}", name) + suffix, diff, passed, value)


def _put(ctx, entries, li, wi, init, transform, diff, passed, onnx_value) -> None:
    layer = ctx.layers[li]
    keras = ctx.values[li][wi]
    match = WeightMatch(
        layer.name,
        type(layer).__name__,
        weight_names(layer)[wi],
        wi,
        tuple(keras.shape),
        init,
        transform,
        float(diff),
        bool(passed),
        keras,
        onnx_value,
    )
    if (li, wi) not in entries or _key(match) > _key(entries[li, wi]):
        entries[li, wi] = match


def _search_layer(ctx: Context, li: int, entries: dict) -> None:
    layer = ctx.layers[li]
    for wi, name in enumerate(weight_names(layer)):
        if name in _unused(layer):  # nothing to find: passed, since the model never reads it
            _put(ctx, entries, li, wi, None, "not used at inference", 0.0, True, None)
    own = ctx.own.get(li, set())
    for alternatives in _groups(ctx, li):
        evaluated = [[(j, ctx.find(j, li)) for j in alt] for alt in alternatives]
        for joint, found in max(evaluated, key=lambda e: _score(e, own)):
            _record(ctx, joint, found, entries)


def match_weights(keras_model, onnx_model, *, atol: float = 1e-6, rtol: float = 1e-5) -> WeightReport:
    """Find every Keras weight among the ONNX initializers, by value.

    Args:
        keras_model: the Keras model the ONNX model was converted from.
        onnx_model: an ``onnx.ModelProto`` (from ``xverify.convert`` or a file).
        atol, rtol: a weight passes where ``|onnx - keras| <= atol + rtol * |keras|`` element-wise
            (tensors that TensorFlow recomputed from several weights, such as a BatchNormalization
            folded into a Conv, get at least atol 1e-5 and rtol 1e-4 for float32 rounding).

    Returns:
        A WeightReport: per layer, each weight's initializer, transform, max abs diff and verdict.
    """
    ctx = Context(keras_model, onnx_model, atol, rtol)
    entries: dict = {}
    for loose in (False, True):
        # First only matches within tolerance, so that the closest-but-different search of the
        # second pass can skip every initializer another weight already accounts for.
        ctx.loose = loose
        for li, values in enumerate(ctx.values):
            if not loose or not all(
                (li, wi) in entries and entries[li, wi].passed for wi in range(len(values))
            ):
                _search_layer(ctx, li, entries)
        ctx.claimed = {m.onnx_initializer for m in entries.values() if m.passed}
    layers = []
    for li, (layer, values) in enumerate(zip(ctx.layers, ctx.values)):
        names = weight_names(layer)
        # Not ``entries.get(...) or ...``: a failed WeightMatch is falsy but still the answer.
        weights = tuple(
            entries[li, wi]
            if (li, wi) in entries
            else WeightMatch(
                layer.name,
                type(layer).__name__,
                names[wi],
                wi,
                tuple(v.shape),
                None,
                "unmatched",
                math.inf,
                False,
                v,
                None,
            )
            for wi, v in enumerate(values)
        )
        if weights:
            layers.append(LayerWeights(layer.name, type(layer).__name__, weights))
    used = {m.onnx_initializer for m in entries.values()}
    unattributed = tuple(n for n, a in ctx.inits.items() if a.size > 1 and n not in used)
    return WeightReport(tuple(layers), unattributed)
