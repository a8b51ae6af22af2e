"""The NumPy activation table: each Keras activation as a small float64 function of ``z``.

Keyword arguments mirror Keras' own (``negative_slope``, ``alpha``, ...), so the arguments read from
a layer can be passed straight through; ``inspect.signature`` of an entry says which it accepts.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -z))  # never overflows, unlike 1 / (1 + exp(-z))


def _relu(z, negative_slope=0.0, max_value=None, threshold=0.0):
    y = np.where(z > threshold, z, negative_slope * (z - threshold)) + 0.0  # + 0.0: no "-0.0"
    return y if max_value is None else np.minimum(y, max_value)


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))  # subtract the max first: stable
    return e / e.sum(axis=axis, keepdims=True)


def _gelu(z, approximate=False):
    if approximate:  # Keras' tanh form, used when Dense/Activation asks for approximate=True
        return 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
    return 0.5 * z * (1 + _erf(z / math.sqrt(2)))


def _elu(z, alpha=1.0):
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))


ACTIVATIONS: dict[str, Callable[..., np.ndarray]] = {
    "linear": lambda z: z,
    "relu": _relu,
    "relu6": lambda z: np.clip(z, 0, 6),
    "leaky_relu": lambda z, negative_slope=0.2: np.where(z >= 0, z, negative_slope * z),
    "elu": _elu,
    "selu": lambda z: _SELU_SCALE * _elu(z, _SELU_ALPHA),
    "gelu": _gelu,
    "silu": lambda z: z * _sigmoid(z),
    "swish": lambda z: z * _sigmoid(z),
    "sigmoid": _sigmoid,
    "hard_sigmoid": lambda z: np.clip(z + 3, 0, 6) / 6,
    "tanh": np.tanh,
    "softmax": _softmax,
    "softplus": lambda z: np.logaddexp(0.0, z),
    "softsign": lambda z: z / (1 + np.abs(z)),
    "exponential": np.exp,
    "hard_silu": lambda z: z * np.clip(z + 3, 0, 6) / 6,
    "mish": lambda z: z * np.tanh(np.logaddexp(0.0, z)),
}


def clamp_bounds(name: str, params: dict) -> tuple:
    """The values an activation clamps to (0 for a ReLU, 6 for relu6), or ``()`` when it has none.

    Args:
        name: a key of ``ACTIVATIONS``.
        params: the keyword arguments the activation is called with.

    Returns:
        A tuple of bound values; an output equal to one of them, and unlike ``z``, was clamped.
    """
    bounds = {
        "relu": (0.0, params.get("max_value") or np.inf),
        "relu6": (0.0, 6.0),
        "hard_sigmoid": (0.0, 1.0),
    }
    return bounds.get(name, ())


def _excel_relu(z, negative_slope=0.0, max_value=None, threshold=0.0):
    if not negative_slope and not threshold:
        core = f"MAX(0,{z})"
    else:
        core = f"IF({z}>{threshold!r},{z},{negative_slope!r}*({z}-{threshold!r}))"
    return core if max_value is None else f"MIN({core},{max_value!r})"


def _excel_elu(z, alpha=1.0):
    return f"IF({z}>0,{z},{alpha!r}*(EXP(MIN({z},0))-1))"


def _excel_gelu(z, approximate=False):
    if approximate:
        return f"0.5*{z}*(1+TANH(SQRT(2/PI())*({z}+0.044715*{z}^3)))"
    return f"0.5*{z}*(1+ERF({z}/SQRT(2)))"


# The same activations as spreadsheet formulas of a cell reference ``z`` (Excel and LibreOffice
# syntax); softmax also takes the range of its layer's z cells. Keys and arguments match ACTIVATIONS.
EXCEL: dict[str, Callable[..., str]] = {
    "linear": lambda z: z,
    "relu": _excel_relu,
    "relu6": lambda z: f"MIN(MAX(0,{z}),6)",
    "leaky_relu": lambda z, negative_slope=0.2: f"IF({z}>=0,{z},{negative_slope!r}*{z})",
    "elu": _excel_elu,
    "selu": lambda z: f"{_SELU_SCALE!r}*{_excel_elu(z, _SELU_ALPHA)}",
    "gelu": _excel_gelu,
    "silu": lambda z: f"{z}/(1+EXP(-{z}))",
    "swish": lambda z: f"{z}/(1+EXP(-{z}))",
    "sigmoid": lambda z: f"1/(1+EXP(-{z}))",
    "hard_sigmoid": lambda z: f"MIN(MAX({z}+3,0),6)/6",
    "tanh": lambda z: f"TANH({z})",
    "softmax": lambda z, zs, axis=-1: f"EXP({z}-MAX({zs}))/SUMPRODUCT(EXP({zs}-MAX({zs})))",
    "softplus": lambda z: f"LN(1+EXP({z}))",
    "softsign": lambda z: f"{z}/(1+ABS({z}))",
    "exponential": lambda z: f"EXP({z})",
    "hard_silu": lambda z: f"{z}*MIN(MAX({z}+3,0),6)/6",
    "mish": lambda z: f"{z}*TANH(LN(1+EXP({z})))",
}
