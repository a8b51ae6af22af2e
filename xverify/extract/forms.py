"""The layouts tf2onnx gives one Keras weight, and how values are compared across them.

A form is a pair of functions: Keras layout -> ONNX layout and back. tf2onnx transposes Conv kernels
(HWIO -> OIHW), reshapes DepthwiseConv2D kernels into grouped Conv kernels, may transpose Dense
kernels for Gemm (transB) and flattens EinsumDense kernels into a MatMul.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xverify.compare import within_tolerance


@dataclass(frozen=True)
class Form:
    label: str
    to_onnx: Callable
    to_keras: Callable
    derived: bool = False  # TensorFlow computed the stored value (float32 rounding)


IDENTITY = Form("identity", lambda a: a, lambda a: a)
_LETTERS = {3: ("WIO", "OIW"), 4: ("HWIO", "OIHW"), 5: ("DHWIO", "OIDHW")}


def conv_form(ndim: int, transposed: bool) -> Form:
    # Keras Conv kernels are (*spatial, in, out); ONNX Conv wants (out, in, *spatial). Keras
    # ConvTranspose kernels are (*spatial, out, in) and ONNX ConvTranspose wants (in, out, *spatial):
    # the same axis permutation either way.
    perm = (ndim - 1, ndim - 2, *range(ndim - 2))
    back = tuple(int(i) for i in np.argsort(perm))
    src, dst = _LETTERS.get(ndim, ("spatial,I,O", "O,I,spatial"))
    if transposed:
        src, dst = src[:-2] + "OI", "IO" + dst[2:]
    return Form(f"transpose {src}->{dst}", lambda a: a.transpose(perm), lambda a: a.transpose(back))


def depthwise_form(shape: tuple) -> Form:
    h, w, c, m = shape
    return Form(
        "depthwise reshape (H,W,C,M)->(C*M,1,H,W)",
        lambda a: a.reshape(h, w, c * m).transpose(2, 0, 1)[:, None],
        lambda a: a[:, 0].transpose(1, 2, 0).reshape(h, w, c, m),
    )


def forms(layer_class: str, name: str, shape: tuple) -> list[Form]:
    """The layouts tf2onnx may give one Keras weight, most likely first."""
    found = [IDENTITY]
    if layer_class == "PReLU":  # tf2onnx computes relu(x) + (-alpha) * relu(-x)
        found.append(Form("negated", lambda a: -a, lambda a: -a))
    if len(shape) == 2 and layer_class != "Embedding":
        found.append(Form("transpose (Gemm transB)", lambda a: a.T, lambda a: a.T))
    if len(shape) == 4 and ("depthwise" in name or layer_class.startswith("Depthwise")):
        found.append(depthwise_form(shape))
    elif len(shape) >= 3 and layer_class not in ("Embedding",):
        found.append(conv_form(len(shape), "Transpose" in layer_class))
    if len(shape) >= 3 and "Conv" not in layer_class and layer_class != "Embedding":
        # EinsumDense kernels (MultiHeadAttention's query (D, heads, key_dim), output
        # (heads, key_dim, D)) become one MatMul on the kernel flattened to 2-D.
        found += [_flat_form(shape, k) for k in range(1, len(shape))]
    return found


def activation_forms(layer, name: str) -> list[Form]:
    """A bias TensorFlow's constant folding merged with the activation after it: ``hard_sigmoid``
    is ``relu6(x + 3) / 6``, so the bias reaches ONNX as ``bias + 3``."""
    activation = getattr(getattr(layer, "activation", None), "__name__", "")
    if name == "bias" and activation == "hard_sigmoid":
        return [
            Form(
                "bias + 3 (hard_sigmoid's offset folded in by TensorFlow)",
                lambda a: a + 3,
                lambda a: a - 3,
                True,
            )
        ]
    return []


def _flat_form(shape: tuple, k: int) -> Form:
    flat = (math.prod(shape[:k]), math.prod(shape[k:]))
    return Form(
        f"reshape {tuple(shape)}->{flat} (EinsumDense as MatMul)",
        lambda a: a.reshape(flat),
        lambda a: a.reshape(shape),
    )


def fit(array: np.ndarray, shape: tuple) -> np.ndarray | None:
    """``array`` viewed in ``shape`` when they differ only by size-1 axes (tf2onnx adds some), or
    when a per-channel vector is stored split into groups (GroupNormalization's gamma and beta
    become ``(1, 1, 1, groups, channels / groups)``, in channel order)."""
    if array.size != math.prod(shape):
        return None
    if len(shape) == 1:
        return array.reshape(shape)
    if tuple(d for d in array.shape if d != 1) != tuple(d for d in shape if d != 1):
        return None
    return array.reshape(shape)


def close(found: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> bool:
    """The comparison's own rule (``xverify.compare``), NaN policy included, over a whole tensor."""
    return bool(np.all(within_tolerance(found, expected, atol, rtol)))


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b))) if a.size else 0.0
