"""The witnesses, one contract (``contract.py``): ``run(feeds, taps=()) -> {name: ndarray}``.

``RUNTIMES`` is the registry: each runtime's declarations, by name, in the order ``--runtimes``
lists them. A runtime imports its heavy library when it is built, never at ``import xverify``.
"""

from __future__ import annotations

from collections.abc import Iterable

from xverify.errors import MissingDependencyError, UsageError
from xverify.runtimes import numpy_rt, onnxruntime_rt, openvino_rt, tensorflow_rt, tflite_rt
from xverify.runtimes.contract import (
    Pair,
    PairDiffs,
    Runtime,
    RuntimeSpec,
    RuntimeUnavailable,
    Subject,
    Variant,
)
from xverify.runtimes.numpy_rt import NumpyRuntime
from xverify.runtimes.onnxruntime_rt import OnnxRuntime
from xverify.runtimes.openvino_rt import OpenVinoRuntime
from xverify.runtimes.tensorflow_rt import SavedModelRuntime, TensorflowRuntime
from xverify.runtimes.tflite_rt import TfliteRuntime

RUNTIMES: dict[str, RuntimeSpec] = {
    spec.name: spec
    for spec in (numpy_rt.SPEC, onnxruntime_rt.SPEC, tensorflow_rt.SPEC, openvino_rt.SPEC, tflite_rt.SPEC)
}
DEFAULT_RUNTIMES = ("numpy", "onnxruntime", "tensorflow")
ALL = "all"  # --runtimes all: every registered runtime that is installed; the others are noted


def spec_of(name: str) -> RuntimeSpec | None:
    """The declarations of a runtime, or of the runtime a variant (``onnxruntime-opt``) configures."""
    if name in RUNTIMES:
        return RUNTIMES[name]
    return next((s for s in RUNTIMES.values() if s.variant and s.variant.name == name), None)


def rank(name: str) -> int:
    """Reference rank (lower: trusted more as the b side); unknown names last."""
    spec = spec_of(name)
    return spec.rank if spec else len(RUNTIMES) + 1


def pair(x: str, y: str) -> Pair:
    """The pair of two runtimes with the better-ranked one as the reference side b."""
    return Pair(x, y) if rank(x) > rank(y) else Pair(y, x)


def pairs(names: Iterable[str]) -> list[Pair]:
    """Every pair of ``names``, reference-ranked first (``[tf vs ort, tf vs numpy, ort vs numpy]``)."""
    ordered = sorted(names, key=rank)
    return [Pair(a, b) for i, b in enumerate(ordered) for a in ordered[i + 1 :]]


def select(requested: str | Iterable[str], notes: list[str]) -> tuple[str, ...]:
    """The runtime names asked for (``"numpy,onnxruntime"``, a sequence, or ``"all"``).

    An unknown name is a UsageError; a named runtime that is not installed is a
    MissingDependencyError saying what to pip install; with ``all`` an absent one is a note.
    """
    names = [r.strip() for r in (requested.split(",") if isinstance(requested, str) else requested)]
    names = [n for n in names if n]
    if names == [ALL]:
        absent = [s for s in RUNTIMES.values() if not s.installed()]
        notes.extend(f"{s.name} skipped: not installed ({s.install})" for s in absent)
        return tuple(n for n, s in RUNTIMES.items() if s not in absent)
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown or not names:
        raise UsageError(
            f"--runtimes {','.join(names) or '(empty)'}: unknown runtime(s) "
            f"{unknown or ''}; expected a comma-separated subset of {','.join(RUNTIMES)}, or {ALL}."
        )
    missing = [RUNTIMES[n] for n in names if not RUNTIMES[n].installed()]
    if missing:
        raise MissingDependencyError(
            f"--runtimes {','.join(names)}: {', '.join(s.name for s in missing)} not installed; "
            + "; ".join(f"{s.install}" for s in missing)
            + ", or leave it out of --runtimes."
        )
    return tuple(dict.fromkeys(names))


def describe() -> str:
    """One line per registered runtime: name, what it taps, installed or what to install."""
    lines = []
    for spec in RUNTIMES.values():
        taps = "ONNX tensors" if spec.taps == "onnx" else "Keras layers"
        state = "installed" if spec.installed() else f"not installed: {spec.install}"
        lines.append(f"{spec.name:<12} {spec.label} (taps {taps}); {state}")
    return "\n".join(lines)


__all__ = [
    "ALL",
    "DEFAULT_RUNTIMES",
    "RUNTIMES",
    "NumpyRuntime",
    "OnnxRuntime",
    "OpenVinoRuntime",
    "Pair",
    "PairDiffs",
    "Runtime",
    "RuntimeSpec",
    "RuntimeUnavailable",
    "SavedModelRuntime",
    "Subject",
    "TensorflowRuntime",
    "TfliteRuntime",
    "Variant",
    "describe",
    "pair",
    "pairs",
    "rank",
    "select",
    "spec_of",
]
