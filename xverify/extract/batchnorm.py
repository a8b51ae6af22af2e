"""BatchNormalization as tf2onnx leaves it: a scale and an offset, or folded into the layer before.

tf2onnx multiplies the preceding Conv's kernel by ``gamma / sqrt(var + eps)`` per output channel and
replaces its bias by ``(bias - mean) * scale + beta``; the BatchNormalization's own weights then
survive only inside those two tensors, so they are matched jointly with the kernel and the bias.
"""

from __future__ import annotations

import numpy as np

from xverify.extract.forms import forms
from xverify.extract.joints import Context, Joint, weight_names


def _previous(ctx: Context, li: int) -> int | None:
    """The layer feeding layer ``li`` (its first inbound node), or the one before it in flat order."""
    try:
        parent = ctx.layers[li]._inbound_nodes[0].parent_nodes[0].operation
    except (AttributeError, IndexError):
        parent = None
    found = [pi for pi, layer in enumerate(ctx.layers) if layer is parent]
    return found[0] if found else (li - 1 if li else None)


def bn_groups(ctx: Context, li: int) -> list:
    """BatchNormalization as Mul/Add of scale and offset, or folded into the preceding Conv/Dense."""
    layer, values = ctx.layers[li], ctx.values[li]
    pos = {n: i for i, n in enumerate(weight_names(layer))}
    mean, var = values[pos["moving_mean"]], values[pos["moving_variance"]]
    gamma = values[pos["gamma"]] if "gamma" in pos else np.ones_like(mean)
    beta = values[pos["beta"]] if "beta" in pos else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + layer.epsilon)
    offset = beta - mean * scale
    on_scale = tuple((li, pos[n]) for n in ("gamma", "moving_variance") if n in pos)
    on_offset = tuple((li, pos[n]) for n in ("beta", "moving_mean") if n in pos)
    none = lambda k: lambda a: [None] * k  # noqa: E731  (not recoverable one by one)
    alternatives = [[
        Joint(on_scale, scale, none(len(on_scale)), ("BN scale gamma/sqrt(var+eps)",) * 2, True),
        Joint(on_offset, offset, none(len(on_offset)), ("BN offset beta-mean*scale",) * 2, True)]]
    pi = _previous(ctx, li)
    if pi is None or weight_names(ctx.layers[pi])[:1] != ["kernel"]:
        return [alternatives]
    cls, pvals = type(ctx.layers[pi]).__name__, ctx.values[pi]
    kernel = pvals[0]
    has_bias = len(pvals) > 1 and pvals[1].shape == mean.shape

    def scaled(k, s):  # BN scales the output channel: the last axis (last two, depthwise)
        return (k.reshape(*k.shape[:-2], -1) * s).reshape(k.shape) if cls.startswith("Depthwise") else k * s

    bias = pvals[1] if has_bias else np.zeros_like(mean)
    bias_joint = Joint(((pi, 1),) * has_bias + on_offset, (bias - mean) * scale + beta,
                       lambda a: [(a - beta) / scale + mean] * has_bias + [None] * len(on_offset),
                       (f"identity, {layer.name} folded in ({{init}})",) * has_bias
                       + ("folded into {init}",) * 2, True)
    for form in forms(cls, "kernel", kernel.shape):
        alternatives.append([Joint(
            ((pi, 0),) + on_scale, form.to_onnx(scaled(kernel, scale)),
            lambda a, f=form: [scaled(f.to_keras(a), 1 / scale)] + [None] * len(on_scale),
            (f"{form.label}, {layer.name} folded in ({{init}})",) + ("folded into {init}",) * 2,
            True), bias_joint])
    return [alternatives]
