"""BatchNormalization as tf2onnx leaves it: a scale and an offset, or folded into the layer before.

tf2onnx multiplies the preceding Conv's kernel (a SeparableConv's pointwise kernel) by
``gamma / sqrt(var + eps)`` per output channel and replaces its bias (zeros when it has none) by
``(bias - mean) * scale + beta``; the BatchNormalization's own weights then survive only inside those
two tensors, so they are matched jointly with the kernel and the bias. tf2onnx 1.17 folds only when
the Conv has no bias of its own, and never into a DepthwiseConv2D; both are covered anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xverify.extract.forms import forms
from xverify.extract.joints import Context, Joint, weight_names

# A SeparableConv's pointwise Conv is the one tf2onnx fuses with the BatchNormalization after it.
_FOLDABLE = ("kernel", "pointwise_kernel")


def _previous(ctx: Context, li: int) -> int | None:
    """The layer feeding layer ``li`` (its first inbound node), or the one before it in flat order
    when Keras does not say; None when the BatchNormalization reads a model input (nothing to fold
    into) or the layer before is a nested model's boundary."""
    try:
        parent = ctx.layers[li]._inbound_nodes[0].parent_nodes[0].operation
    except (AttributeError, IndexError):
        return li - 1 if li else None
    found = [pi for pi, layer in enumerate(ctx.layers) if layer is parent]
    return found[0] if found else None


def _folded_factor(previous) -> tuple[float, str] | None:
    """The constant factor ending the layer before, which TensorFlow's constant folding moves into
    the BatchNormalization's scale: hard_sigmoid's relu6(x + 3) / 6, a Bidirectional's average."""
    if getattr(getattr(previous, "activation", None), "__name__", "") == "hard_sigmoid":
        return 1 / 6, "/ 6 (hard_sigmoid's 1/6 folded in)"
    if getattr(previous, "merge_mode", None) == "ave":
        return 1 / 2, "/ 2 (the Bidirectional's average folded in)"
    return None


def bn_groups(ctx: Context, li: int) -> list:
    """BatchNormalization as Mul/Add of scale and offset, or folded into the preceding layer."""
    layer, values = ctx.layers[li], ctx.values[li]
    pos = {n: i for i, n in enumerate(weight_names(layer))}
    mean, var = values[pos["moving_mean"]], values[pos["moving_variance"]]
    gamma = values[pos["gamma"]] if "gamma" in pos else np.ones_like(mean)
    beta = values[pos["beta"]] if "beta" in pos else np.zeros_like(mean)
    bn = _Statistics(
        layer.name,
        mean,
        beta,
        gamma / np.sqrt(var + layer.epsilon),
        tuple((li, pos[n]) for n in ("gamma", "moving_variance") if n in pos),
        tuple((li, pos[n]) for n in ("beta", "moving_mean") if n in pos),
    )
    none = lambda k: lambda a: [None] * k  # noqa: E731  (not recoverable one by one)
    alternatives = [
        [
            Joint(bn.on_scale, bn.scale, none(len(bn.on_scale)), ("BN scale gamma/sqrt(var+eps)",) * 2, True),
            Joint(
                bn.on_offset,
                beta - mean * bn.scale,
                none(len(bn.on_offset)),
                ("BN offset beta-mean*scale",) * 2,
                True,
            ),
        ]
    ]
    pi = _previous(ctx, li)
    folded = _folded_factor(ctx.layers[pi]) if pi is not None else None
    if folded is not None:  # TensorFlow folds the layer before's last constant into the scale
        factor, why = folded
        alternatives.append(
            [
                Joint(
                    bn.on_scale,
                    bn.scale * factor,
                    none(len(bn.on_scale)),
                    (f"BN scale gamma/sqrt(var+eps) {why}",) * 2,
                    True,
                ),
                alternatives[0][1],
            ]
        )
    return [alternatives + (_folded(ctx, pi, bn) if pi is not None else [])]


@dataclass(frozen=True)
class _Statistics:
    name: str
    mean: np.ndarray
    beta: np.ndarray
    scale: np.ndarray  # gamma / sqrt(var + eps), per channel
    on_scale: tuple  # the targets only the scale holds: gamma, moving_variance
    on_offset: tuple  # and the offset: beta, moving_mean


def _folded(ctx: Context, pi: int, bn: _Statistics) -> list:
    """Alternatives with ``bn`` folded into layer ``pi``'s kernel (one per layout) and bias."""
    names = weight_names(ctx.layers[pi])
    ki = next((i for i, n in enumerate(names) if n in _FOLDABLE), None)
    if ki is None:
        return []
    cls, pvals = type(ctx.layers[pi]).__name__, ctx.values[pi]
    kernel = pvals[ki]
    channels = (
        kernel.shape[-2] * kernel.shape[-1]
        if names[ki] == "kernel" and cls.startswith("Depthwise")
        else kernel.shape[-1]
    )
    if channels != bn.scale.size:  # the layer before does not make the normalized channels
        return []
    bias_at = [i for i, n in enumerate(names) if n == "bias" and pvals[i].shape == bn.mean.shape]
    depthwise = names[ki] == "kernel" and cls.startswith("Depthwise")

    def scaled(k, s):  # BN scales the output channel: the last axis (last two, depthwise)
        return (k.reshape(*k.shape[:-2], -1) * s).reshape(k.shape) if depthwise else k * s

    bias = pvals[bias_at[0]] if bias_at else np.zeros_like(bn.mean)
    recovered = lambda a: [(a - bn.beta) / bn.scale + bn.mean] * len(bias_at)  # noqa: E731
    bias_joint = Joint(
        tuple((pi, bi) for bi in bias_at) + bn.on_offset,
        (bias - bn.mean) * bn.scale + bn.beta,
        lambda a: recovered(a) + [None] * len(bn.on_offset),
        (f"identity, {bn.name} folded in ({{init}})",) * len(bias_at) + ("folded into {init}",) * 2,
        True,
    )
    return [
        [
            Joint(
                ((pi, ki),) + bn.on_scale,
                form.to_onnx(scaled(kernel, bn.scale)),
                lambda a, f=form: [scaled(f.to_keras(a), 1 / bn.scale)] + [None] * len(bn.on_scale),
                (f"{form.label}, {bn.name} folded in ({{init}})",) + ("folded into {init}",) * 2,
                True,
            ),
            bias_joint,
        ]
        for form in forms(cls, names[ki], kernel.shape)
    ]
