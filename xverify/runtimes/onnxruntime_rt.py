"""ONNX Runtime (CPU provider) with an explicit graph-optimization level.

ONNX Runtime returns only graph outputs, so a tapped intermediate is added to ``graph.output`` (typed by
``onnx.shape_inference``); taps need optimizations off, since fusions remove tensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import onnx

from xverify.errors import MissingDependencyError, UsageError
from xverify.runtimes.contract import Feeds, Outputs, RuntimeSpec, Subject, Variant

LEVELS = ("disabled", "basic", "extended", "all")


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            "the onnxruntime runtime needs the onnxruntime package, which "
            "is not installed: pip install onnxruntime"
        ) from exc
    return onnxruntime


def make_session(
    model: onnx.ModelProto, optimization: str, disabled_optimizers: Iterable[str] = (), log_severity: int = 4
) -> Any:
    """A CPU InferenceSession at an optimization level, without the named graph transformers.

    ``log_severity`` 0 makes ONNX Runtime log which transformers changed the graph (ort_bisect.py)."""
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    options.log_severity_level = log_severity
    return ort.InferenceSession(
        model.SerializeToString(),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(disabled_optimizers),
    )


class OnnxRuntime:
    """Run an ONNX model in ONNX Runtime.

    Args:
        onnx_model: the ``onnx.ModelProto``.
        optimization: "disabled" (the graph as written) or "all" (what users deploy; fusions on).
        disabled_optimizers: names of ONNX Runtime graph transformers to leave out (ort_bisect.py).
    """

    def __init__(
        self,
        onnx_model: onnx.ModelProto,
        optimization: str = "disabled",
        disabled_optimizers: Iterable[str] = (),
    ) -> None:
        if optimization not in LEVELS:
            raise UsageError(f"optimization {optimization!r}: expected one of {LEVELS}.")
        self.model = onnx_model
        self.optimization = optimization
        self.disabled_optimizers = tuple(disabled_optimizers)
        self.name = "onnxruntime" if optimization == "disabled" else "onnxruntime-opt"
        self._sessions: dict[tuple[str, ...], Any] = {}  # an onnxruntime.InferenceSession

    def _session(self, taps: tuple[str, ...]) -> Any:
        if taps not in self._sessions:
            if self._sessions:  # one session at a time: each holds a copy of the weights
                from xverify.budget import release_freed_memory

                self._sessions.clear()
                release_freed_memory()
            model = self.model
            if taps:
                model = onnx.ModelProto()
                model.CopyFrom(self.model)
                model.graph.output.extend(self._value_infos()[t] for t in taps)
            self._sessions[taps] = make_session(model, self.optimization, self.disabled_optimizers)
        return self._sessions[taps]

    def _value_infos(self) -> dict[str, onnx.ValueInfoProto]:
        from xverify.shapes import value_infos

        inits = {i.name for i in self.model.graph.initializer}
        return {k: v for k, v in value_infos(self.model).items() if k not in inits}

    def tappable(self, names: Iterable[str]) -> list[str]:
        """The subset of ``names`` whose type is known, so they can be added as graph outputs."""
        outputs = {o.name for o in self.model.graph.output}
        typed = self._value_infos()
        return [n for n in names if n in typed and n not in outputs]

    def run(self, feeds: Feeds, taps: Sequence[str] = ()) -> Outputs:
        """Outputs (and the tappable ``taps``: intermediate tensors exposed as outputs) for ``feeds``.

        A session is built per distinct set of taps, and only the latest is kept."""
        session = self._session(tuple(self.tappable(taps)))
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feeds)))


def _explain_optimized(
    subject: Subject,
    feeds: Feeds,
    base_outputs: Outputs,
    bad: Sequence[str],
    atol: float,
    rtol: float,
    batch: int | None,
) -> dict[str, Any]:
    from xverify.ort_bisect import blame

    return blame(subject.onnx_model, feeds, base_outputs, bad, atol=atol, rtol=rtol, batch=batch).to_dict()


SPEC = RuntimeSpec(
    name="onnxruntime",
    label="ONNX Runtime",
    short="ort",
    taps="onnx",
    streams=False,
    rank=1,
    build=lambda subject: OnnxRuntime(subject.onnx_model, "disabled"),
    modules=("onnxruntime",),
    install="pip install onnxruntime",
    variant=Variant(
        name="onnxruntime-opt",
        build=lambda subject: OnnxRuntime(subject.onnx_model, "all"),
        explain=_explain_optimized,
    ),
)
