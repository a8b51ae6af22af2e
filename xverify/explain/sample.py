"""One sample's values, as the user typed them, shaped for the model's single input."""

from __future__ import annotations

import math
import re

import numpy as np

from xverify.errors import InputDataError
from xverify.explain.graph import ensure_built, functional_of


def parse_sample(model, x, path) -> np.ndarray:
    """One sample's values shaped (1, *input_shape[1:]), or an InputDataError saying why not.

    Args:
        model: a built Keras model with a single input.
        x: a scalar, a list, a numpy array or a comma- or space-separated string of numbers.
        path: the file the model came from, to name it in messages (None for a model object).

    Returns:
        A float64 array holding one sample.
    """
    where = path or f"model '{model.name}'"
    if isinstance(x, str):
        x = [part for part in re.split(r"[,\s]+", x.strip()) if part]
    try:
        values = np.asarray(x, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise InputDataError(
            f"{where}: the input values must be numbers, found {x!r}. Pass "
            "comma-separated numbers with --input, e.g. --input 10."
        ) from exc
    ensure_built(model, values.size, where)
    try:
        inputs = model.inputs
    except (AttributeError, ValueError) as exc:
        if functional_of(model) is None and type(model).__name__ != "Sequential":
            return values.reshape(1, -1)  # a subclassed model: its call() decides the shape
        raise InputDataError(
            f"{where}: the model is not built, so its input shape is unknown; "
            "call model.build(input_shape) or save a built model."
        ) from exc
    if len(inputs) != 1:
        raise InputDataError(
            f"{where}: has {len(inputs)} inputs "
            f"({', '.join(t.name for t in inputs)}); explain handles single-input "
            "models only. Use `xverify check` for this model."
        )
    shape = tuple(inputs[0].shape)
    per = shape[1:]
    known = math.prod(d for d in per if d is not None)
    free = sum(d is None for d in per)
    fits = values.size == known if free == 0 else (free == 1 and values.size and values.size % known == 0)
    if not fits:
        shown = "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
        raise InputDataError(
            f"{where}: expected {known} input value(s) per sample for input "
            f"'{inputs[0].name}' of shape {shown}, found {values.size}. Pass "
            f"{known} comma-separated values with --input."
        )
    return values.reshape((1, *[-1 if d is None else d for d in per]))
