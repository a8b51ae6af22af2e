""" "Why is my number wrong?": the common hand-calculation mistakes tried one by one and in pairs.

Each mistake is a ``forward.Tweak`` of one layer call (activation skipped, bias left out, kernel
read in the other order, units handed on in reverse, a normalization or rescaling layer left out)
or of the whole pass (float16 rounding, the input scaled). Every candidate reruns the walk with its
mistakes; the ones that land within the precision the user typed explain the number. When none
does, ``ranges`` says from which layer on such a value cannot arise at all.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

from xverify.errors import InputDataError
from xverify.explain.forward import Tweak, Variant, forward
from xverify.explain.layers import dense_weights
from xverify.explain.ranges import first_impossible

NORMALIZERS = {
    "Normalization",
    "Rescaling",
    "BatchNormalization",
    "LayerNormalization",
    "UnitNormalization",
    "GroupNormalization",
}
SCALES = (1 / 255, 255.0, 0.1, 10.0, 0.01, 100.0, 0.001, 1000.0)
MAX_PAIRED = 40  # with more single mistakes, only the closest this many are paired
# A pass reruns every layer Keras computes whose input a mistake changed: on a model with many of
# them (MobileNetV2: ~100), pairs are limited so that about this many layer calls are made.
CALL_BUDGET = 10_000
MIN_PAIRED = 4
_TWEAKS = {"skip_activation", "no_bias", "transposed", "reversed_units", "ignored"}
_PRETTY = {
    "relu": "ReLU",
    "relu6": "ReLU6",
    "leaky_relu": "LeakyReLU",
    "elu": "ELU",
    "selu": "SELU",
    "gelu": "GELU",
}
_ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"]


@dataclass(frozen=True)
class Mistake:
    """One mistake: ``kind`` is a ``Tweak`` field name, "float16" or "input_scale"."""

    kind: str
    call: int | None = None  # the layer call it is made at (None for the whole pass)
    scale: float = 1.0  # for "input_scale"


@dataclass(frozen=True)
class Candidate:
    """A set of mistakes and the output they give."""

    mistakes: tuple
    output: np.ndarray
    distance: float  # max |output − mine|
    matches: bool  # within the precision the user typed


@dataclass(frozen=True)
class Diagnosis:
    """The user's number, the candidates tried (closest first) and the verdict in one sentence.

    Example::

        d = xverify.explain("model.keras", 10).diagnose(20.475)
        print(d.sentence)  # "Your 20.475 is what the model gives when the ReLU of the first ..."
    """

    mine: np.ndarray
    output: np.ndarray
    tolerance: float
    candidates: tuple
    tried: int
    sentence: str
    impossible: str | None = None  # from which layer on such a value cannot arise
    explanation: object = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def best(self) -> Candidate | None:
        """The simplest matching candidate, or None when no mistake tried explains the number."""
        return _simplest(self.candidates)

    def __bool__(self) -> bool:
        return self.best is not None or bool(self.tolerance >= np.abs(self.output - self.mine).max())

    def text(self) -> str:
        from xverify.explain.render import diagnosis_text

        return diagnosis_text(self)


def diagnose(ex, mine) -> Diagnosis:
    """Find which common mistake turns the model's output into ``mine``.

    Args:
        ex: the Explanation of the input the user computed by hand.
        mine: the user's result: a number (or as many numbers as the model outputs), or a string
            of them as typed (its digits set how close a candidate must come).

    Returns:
        A ``Diagnosis``; ``.sentence`` is the answer, ``.text()`` the candidates too.
    """
    values, typed, tolerance = _parse_mine(ex, mine)
    if ex.graph is None:
        raise InputDataError(
            f"model '{ex.model_name}' is a subclassed model: its layers cannot be "
            "rerun with mistakes, so --mine cannot be diagnosed."
        )
    evaluated = [_evaluate(ex, (m,), values, tolerance) for m in _singles(ex)]
    singles = [c for c in evaluated if c is not None]
    paired = sorted(singles, key=lambda c: c.distance)[: _pairable(ex, len(singles))]
    pairs = [
        _evaluate(ex, a.mistakes + b.mistakes, values, tolerance)
        for a, b in itertools.combinations(paired, 2)
        if _compatible(a.mistakes[0], b.mistakes[0])
    ]
    candidates = sorted(
        singles + [p for p in pairs if p is not None], key=lambda c: (c.distance, len(c.mistakes))
    )
    own = float(np.abs(ex.output - values).max())
    impossible = None
    if own > tolerance and not any(c.matches for c in candidates):
        impossible = first_impossible(ex, values) or (
            "No layer rules a value like that out: from every layer on, the rest of the model "
            "can still reach it."
        )
    sentence = _sentence(ex, ", ".join(typed), own <= tolerance, candidates, len(candidates))
    return Diagnosis(
        values, ex.output, tolerance, tuple(candidates), len(candidates), sentence, impossible, ex
    )


def _pairable(ex, singles: int) -> int:
    """How many of the closest single mistakes to pair, within the budget of Keras layer calls."""
    keras_calls = sum(not s.by_hand for s in ex.hand.summaries)
    budget = CALL_BUDGET // (1 + keras_calls) - singles
    k = MAX_PAIRED
    while k > MIN_PAIRED and k * (k - 1) // 2 > budget:
        k -= 1
    return k


def _parse_mine(ex, mine):
    """The user's values shaped like the output, as typed, and half a unit of the last digit."""
    if isinstance(mine, str) and ex.output.size == 1 and mine.count(",") == 1 and "." not in mine:
        mine = mine.replace(",", ".")  # "20,475" as a spreadsheet with a decimal comma shows it
    typed = (
        [p for p in str(mine).replace(";", ",").replace(",", " ").split() if p]
        if isinstance(mine, str)
        else [_g(float(v)) for v in np.ravel(mine)]
    )
    try:
        values = np.array([float(t) for t in typed], np.float64)
    except ValueError as exc:
        raise InputDataError(
            f"--mine {mine!r}: expected the number(s) you computed, e.g. --mine 20.475."
        ) from exc
    if values.size != ex.output.size:
        raise InputDataError(
            f"--mine: the model gives {ex.output.size} output value(s), found "
            f"{values.size}; pass one number per output value."
        )
    decimals = max((len(t.split(".")[1]) if "." in t and "e" not in t.lower() else 0) for t in typed)
    # Half a unit of the last digit typed, but never more than 0.5% of the number: "0.1" typed
    # for a softmax output would otherwise accept anything from 0.05 to 0.15.
    largest = float(np.abs(values).max())
    tolerance = max(min(0.5 * 10.0**-decimals, 5e-3 * largest), 1e-5 * max(1.0, largest))
    return values.reshape(ex.output.shape), typed, tolerance


def _singles(ex) -> list:
    mistakes = []
    outputs = set(ex.graph.output_keys)
    for i, (call, summary) in enumerate(zip(ex.graph.calls, ex.hand.summaries)):
        if summary.by_hand and summary.changed:
            mistakes.append(Mistake("skip_activation", i))
        if summary.by_hand and call.kind == "Dense":
            kernel, bias = dense_weights(call.layer)
            if np.any(bias):
                mistakes.append(Mistake("no_bias", i))
            if min(kernel.shape) > 1:
                mistakes.append(Mistake("transposed", i))
            if kernel.shape[1] > 1 and not outputs & set(call.outputs):
                mistakes.append(Mistake("reversed_units", i))
        if call.kind in NORMALIZERS and len(call.inputs) == 1:
            mistakes.append(Mistake("ignored", i))
    mistakes.append(Mistake("float16"))
    if np.issubdtype(np.dtype(ex.graph.calls[0].node.input_tensors[0].dtype), np.floating):
        mistakes += [Mistake("input_scale", scale=s) for s in SCALES]
    return mistakes


def _compatible(a: Mistake, b: Mistake) -> bool:
    if a.kind == b.kind and (a.call == b.call or a.kind in ("input_scale", "float16")):
        return False
    return not (a.call is not None and a.call == b.call and "ignored" in (a.kind, b.kind))


def _variant(mistakes) -> Variant:
    tweaks: dict[int, Tweak] = {}
    float16, scale = False, 1.0
    for m in mistakes:
        if m.kind in _TWEAKS:
            tweaks[m.call] = dataclasses.replace(tweaks.get(m.call, Tweak()), **{m.kind: True})
        float16 |= m.kind == "float16"
        scale *= m.scale if m.kind == "input_scale" else 1.0
    return Variant(tuple(sorted(tweaks.items())), float16, scale)


def _evaluate(ex, mistakes, mine, tolerance) -> Candidate | None:
    try:
        output = forward(ex.graph, ex.input, ex.taps, _variant(mistakes), ex.hand).output
    except Exception:  # a layer that cannot take the changed values (shape, dtype): not a candidate
        return None
    if output.shape != mine.shape or not np.all(np.isfinite(output)):
        return None
    distance = float(np.abs(output - mine).max())
    return Candidate(mistakes, output, distance, distance <= tolerance)


def describe(ex, mistake: Mistake) -> str:
    """A mistake in words, e.g. "the ReLU of the first layer ('dense') is skipped"."""
    if mistake.kind == "float16":
        return "every number is rounded to float16 (half precision)"
    if mistake.kind == "input_scale":
        s = mistake.scale
        how = f"divided by {_g(1 / s)}" if s < 1 else f"multiplied by {_g(s)}"
        x = ex.input.ravel()
        more = ", ..." if x.size > 1 else f" instead of {_g(float(x[0]))}"
        return f"the input is {how} (x = {_g(float(x[0]) * s)}{more})"
    index = mistake.call
    if index is None:  # every mistake but the whole-pass ones above is made at one call
        raise AssertionError(f"mistake {mistake.kind!r} names no layer call")
    call, summary = ex.graph.calls[index], ex.hand.summaries[index]
    where = f"the {_ordinal(index)} layer ('{call.label}')"
    if mistake.kind == "skip_activation":
        name = summary.activation.split("(")[0]
        return f"the {_PRETTY.get(name, name)} of {where} is skipped (a = z)"
    square = call.kind == "Dense" and len(set(dense_weights(call.layer)[0].shape)) == 1
    how = "(W[j][i] used for W[i][j])" if square else "(its numbers taken column by column)"
    return {
        "no_bias": f"the bias of {where} is left out (z = x·W)",
        "transposed": f"the kernel of {where} is read transposed {how}",
        "reversed_units": f"the units of {where} are taken in reverse order by the next layer",
        "ignored": f"the {call.kind} layer '{call.label}' ({_ordinal(index)} layer) is left out",
    }[mistake.kind]


def _sentence(ex, shown, is_output, candidates, tried) -> str:
    if is_output:
        return f"Your {shown} is the model's own output: your calculation is right."
    best = _simplest(candidates)
    if best is None:
        return (
            f"None of the {tried} mistakes tried (one at a time and in pairs) gives {shown}; "
            "the calculation went wrong in some other way."
        )
    what = " and ".join(describe(ex, m) for m in best.mistakes)
    others = sum(c.matches for c in candidates) - 1
    also = (
        (
            f" ({others} other candidate{'s' * (others > 1)} also match{'es' * (others == 1)}: "
            "type more digits to tell them apart)"
        )
        if others
        else ""
    )
    return f"Your {shown} is what the model gives when {what}: {_values(best.output)}{also}."


def _simplest(candidates) -> Candidate | None:
    """The matching candidate with the fewest mistakes (the closest among those)."""
    return min(
        (c for c in candidates if c.matches), default=None, key=lambda c: (len(c.mistakes), c.distance)
    )


def _ordinal(index: int) -> str:
    return _ORDINALS[index] if index < len(_ORDINALS) else f"{index + 1}th"


def _g(v: float) -> str:
    return f"{v:.6g}"


def _values(values) -> str:
    flat = np.ravel(values)
    return ", ".join(f"{v:.4f}" for v in flat[:8]) + (", …" if flat.size > 8 else "")
