"""Which ONNX Runtime graph transformer makes the optimized run disagree with the unoptimized one.

ONNX Runtime names no transformer in its results, but at log severity 0 it logs each one that
changed the graph ("GraphTransformer X modified: 1"). Those names are the candidates; disabling a
set of them (``disabled_optimizers``) and comparing again with the unoptimized outputs at the
check's tolerance tells whether they are to blame. Disabling one transformer can let another
match the same nodes (LayerNormFusionL1 off, SimplifiedLayerNormFusion fuses the tail), so the
candidates are gathered to a fixed point before the smallest blameworthy set is searched:
exhaustively up to two transformers, then by dropping one at a time (a set none of whose members
can be dropped).
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from dataclasses import asdict, dataclass

from xverify.compare import compare
from xverify.runtimes.onnxruntime_rt import OnnxRuntime, make_session

_MODIFIED = re.compile(r"GraphTransformer (\S+) modified: 1")
_LEVELS = ("basic", "extended", "all")
_EXHAUSTIVE = 10  # candidates up to which every pair is tried before the one-at-a-time search
_ROUNDS = 8  # rounds of gathering candidates (each a session); ORT has ~50 transformers


@dataclass(frozen=True)
class OrtBlame:
    """The result of the bisection, the report's ``ort_optimizations``.

    ``culprits`` is the smallest set found whose removal restores agreement on every output;
    ``restored`` is False when disabling every transformer that changed the graph still
    disagrees (a kernel chosen by the level, not a rewrite), and then ``culprits`` is empty.
    """

    onnxruntime: str
    outputs: tuple[str, ...]
    first_level: str | None
    applied: tuple[str, ...]
    culprits: tuple[str, ...]
    restored: bool
    search: str  # "exhaustive" (no smaller set exists) or "one-minimal"
    sessions: int

    def to_dict(self) -> dict:
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def sentence(self) -> str:
        return sentence(self.to_dict())


def sentence(blamed: dict) -> str:
    """One line for the reports from ``OrtBlame.to_dict()`` (the JSON field)."""
    version, level = blamed["onnxruntime"], blamed["first_level"]
    if level is None:
        return f"ONNX Runtime {version}: optimized and unoptimized agreed when rerun; no transformer to blame"
    if not blamed["restored"]:
        return (
            f"ONNX Runtime {version}: disabling every graph transformer that changed the graph "
            f"({', '.join(blamed['applied']) or 'none'}) does not restore agreement; the "
            f"difference starts at level {level}"
        )
    smallest = "" if blamed["search"] == "exhaustive" else " (none of them can be dropped)"
    return (
        f"ONNX Runtime {version}: disabling {', '.join(blamed['culprits'])}{smallest} restores "
        f"agreement on {', '.join(blamed['outputs'])}; the difference starts at level {level}; "
        f"disabled_optimizers={list(blamed['culprits'])}"
    )


class _Probe:
    """Runs ONNX Runtime with transformers disabled and says whether it agrees with the reference."""

    def __init__(self, model, feeds, reference, atol, rtol, batch):
        self.model, self.feeds, self.reference = model, feeds, reference
        self.atol, self.rtol, self.batch = atol, rtol, batch
        self.sessions = 0

    def agrees(self, disabled=(), level="all") -> bool:
        from xverify.runtimes.batched import Batched

        self.sessions += 1
        runner: OnnxRuntime | Batched = OnnxRuntime(self.model, level, disabled)
        runner = runner if self.batch is None else Batched(runner, self.batch)
        result = runner.run(self.feeds)
        names = [o.name for o in self.model.graph.output]
        values = [result[n] for n in names] if all(n in result for n in names) else list(result.values())
        return all(
            compare(v, self.reference[n], atol=self.atol, rtol=self.rtol) for n, v in zip(names, values)
        )

    def modified(self, disabled) -> list[str]:
        """The transformers that change the graph at level "all" with ``disabled`` left out."""
        self.sessions += 1
        return _modified_transformers(self.model, disabled)


def _modified_transformers(model, disabled) -> list[str]:
    """Read ONNX Runtime's own log (written by C++ to fd 2) while a session is built."""
    with tempfile.TemporaryFile(mode="w+b") as log:
        saved = os.dup(2)
        try:
            os.dup2(log.fileno(), 2)
            make_session(model, "all", disabled, log_severity=0)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    return list(dict.fromkeys(_MODIFIED.findall(text)))


def blame(model, feeds, reference, outputs, *, atol, rtol, batch=None) -> OrtBlame:
    """Bisect ONNX Runtime's graph transformers for the optimized/unoptimized disagreement.

    Args:
        model: the ``onnx.ModelProto`` checked.
        feeds: the inputs the check ran.
        reference: ONNX Runtime's outputs with optimizations disabled, by output name.
        outputs: the names of the outputs that disagreed (for the report).
        atol, rtol: the check's tolerance; agreement means every output within it.
        batch: the model's fixed batch size, if its inputs fix one.
    """
    import onnxruntime

    probe = _Probe(model, feeds, reference, atol, rtol, batch)
    first_level = next((level for level in _LEVELS if not probe.agrees((), level)), None)
    applied: list[str] = []
    for _ in range(_ROUNDS):
        if probe.agrees(applied):
            break
        new = [name for name in probe.modified(applied) if name not in applied]
        if not new:
            break
        applied += new
    restored = bool(applied) and probe.agrees(applied)
    culprits, search = _smallest(applied, probe) if restored else ((), "exhaustive")
    return OrtBlame(
        onnxruntime.__version__,
        tuple(outputs),
        first_level,
        tuple(applied),
        tuple(culprits),
        restored,
        search,
        probe.sessions,
    )


def _smallest(applied, probe) -> tuple[tuple[str, ...], str]:
    """The smallest subset of ``applied`` whose removal restores agreement (it does for all)."""
    if len(applied) <= _EXHAUSTIVE:
        for size in (1, 2):
            for subset in itertools.combinations(applied, size):
                if probe.agrees(subset):
                    return subset, "exhaustive"
        if len(applied) <= 3:  # every smaller subset failed: the whole set is the smallest
            return tuple(applied), "exhaustive"
    kept = list(applied)
    for name in list(applied):
        trial = [n for n in kept if n != name]
        if trial and probe.agrees(trial):
            kept = trial
    # When every set of one or two was tried and failed, a kept set of three is the smallest.
    tried_pairs = len(applied) <= _EXHAUSTIVE
    return tuple(kept), "exhaustive" if tried_pairs and len(kept) <= 3 else "one-minimal"
