"""The runtime contract: what a runtime declares, the one ``run`` signature, and runtime pairs.

A runtime is a class with ``run(feeds, taps=()) -> {name: ndarray}`` (the model's outputs, plus the
``taps`` it can reach) and a ``spec``: a ``RuntimeSpec`` saying what its taps name, whether it can
stream its tensors to a callback, how it ranks as a reference, which model it runs and how it is
built. ``check`` and the per-layer comparison read only these declarations; no runtime is named in
them. The registry (``xverify.runtimes.RUNTIMES``) lists the specs; adding a runtime is its own
module and one line there.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from xverify.compare import TensorDiff

TapKind = Literal["onnx", "keras"]  # ONNX tensor names, or Keras layer names
Feeds = Mapping[str, np.ndarray]  # input name -> batch
Outputs = dict[str, np.ndarray]  # output (or tap) name -> value
OnTensor = Callable[[str, np.ndarray], object]  # a streaming runtime's per-tensor callback


class Runtime(Protocol):
    """What every runtime offers (a ``spec.streams`` runtime also has ``stream``)."""

    @property
    def name(self) -> str:
        """The runtime's name in reports (a variant's own: "onnxruntime-opt")."""
        ...

    def run(self, feeds: Feeds, taps: Sequence[str] = ()) -> Outputs:
        """The model's outputs for ``feeds``, plus each of ``taps`` the runtime can reach."""
        ...


class RuntimeUnavailable(Exception):
    """Raised by a spec's ``build`` when the runtime cannot take this model (a note, not an error)."""


@dataclass(frozen=True)
class Subject:
    """What a runtime may be built from: the ONNX model, and the Keras model or SavedModel handle."""

    onnx_model: Any
    keras_model: Any = None  # None when the model is an ONNX file
    saved_model: bool = False  # keras_model is a SavedModel handle (no layers)


@dataclass(frozen=True)
class Variant:
    """A second configuration of a runtime compared against it (ONNX Runtime optimized vs not).

    ``explain(subject, feeds, base_outputs, bad_outputs, atol, rtol, batch)`` returns the JSON
    record of why the two disagree (``CheckReport.ort_optimizations``), or is None."""

    name: str
    build: Callable[[Subject], Runtime]
    explain: Callable[..., dict[str, Any] | None] | None = None


@dataclass(frozen=True)
class RuntimeSpec:
    """One runtime's declarations.

    Attributes:
        name: the name ``--runtimes`` takes and reports print.
        label: the name in sentences ("TensorFlow").
        short: the name in narrow table columns ("tf").
        taps: what its taps name: "onnx" (tensors of the ONNX graph) or "keras" (Keras layers);
            it is also the model it runs (the exported graph, or the Keras model).
        streams: it can hand every tensor to a callback during one pass (``stream``), so the
            per-layer comparison runs it once for all chunks.
        rank: its rank as the reference side b of |a - b| <= atol + rtol * |b| (lower first:
            the trained model is 0).
        build: makes the runtime from a Subject; raises RuntimeUnavailable for a model it cannot take.
        modules: importable modules it needs (checked without importing them).
        install: what to pip install when they are missing.
        dist: the distribution whose version the report records (None: already recorded).
        oracle: builds the float64 oracle of the ONNX graph (the NumPy engine).
        variant: a second configuration compared against it (``check(ort_optimized=...)``).
    """

    name: str
    label: str
    short: str
    taps: TapKind
    streams: bool
    rank: int
    build: Callable[[Subject], Runtime]
    modules: tuple[str, ...] = ()
    install: str = ""
    dist: str | None = None
    oracle: Callable[[Subject], Runtime] | None = None
    variant: Variant | None = None

    @property
    def runs_onnx(self) -> bool:
        """It runs the exported ONNX graph (so the float64 oracle can referee it)."""
        return self.taps == "onnx"

    def installed(self) -> bool:
        """Every module it needs can be imported (found, not imported: no heavy import here)."""
        return all(importlib.util.find_spec(m) is not None for m in self.modules)


@dataclass(frozen=True, order=True)
class Pair:
    """Two runtimes compared, ``b`` the reference side (the better-ranked one).

    ``str(pair)`` is ``"a|b"``, the key of the JSON report's per-layer diffs.
    """

    a: str
    b: str = field()

    def __str__(self) -> str:
        return f"{self.a}|{self.b}"

    def __contains__(self, name: str) -> bool:
        return name in (self.a, self.b)

    def other(self, name: str) -> str:
        return self.b if name == self.a else self.a


class PairDiffs(dict[Pair, "TensorDiff"]):
    """``{Pair: TensorDiff}`` that also answers the JSON report's ``"a|b"`` keys (exactly in that
    order, b the reference), as ``LayerDiff.diffs`` did before pairs were typed."""

    @staticmethod
    def _key(key: Pair | str) -> Pair:
        if isinstance(key, Pair):
            return key
        a, _, b = key.partition("|")
        return Pair(a, b)

    def __getitem__(self, key: Pair | str) -> TensorDiff:
        return super().__getitem__(self._key(key))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (Pair, str)) and super().__contains__(self._key(key))

    # dict.get's overloads promise the default's own type back; this one takes "a|b" keys too
    def get(self, key: Pair | str, default: TensorDiff | None = None) -> TensorDiff | None:  # type: ignore[override]
        return super().get(self._key(key), default)
