"""OpenVINO: the ONNX model on OpenVINO's CPU plugin (``pip install "xverify[openvino]"``).

OpenVINO reads the ONNX model itself (its ONNX frontend) and compiles it for the CPU plugin. The
plugin infers in bf16 or f16 by default on CPUs that have them, so the same model would give
host-dependent numbers: the precision is pinned to f32 and the execution mode to accuracy. A tap is
an ONNX tensor made a model output (``Model.add_outputs`` by tensor name); a compiled model is built
per set of taps and only the latest is kept (each holds a copy of the weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx

from xverify.errors import ConversionError, MissingDependencyError, XverifyError
from xverify.runtimes.contract import Feeds, Outputs, RuntimeSpec

_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "EXECUTION_MODE_HINT": "ACCURACY"}


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise MissingDependencyError(
            'the openvino runtime needs OpenVINO, which is not installed: pip install "xverify[openvino]"'
        ) from exc
    return openvino


class OpenVinoRuntime:
    """Run an ONNX model with OpenVINO's CPU plugin in f32.

    Example::

        outs = OpenVinoRuntime(onnx_model).run({"x": x}, taps=["conv1/BiasAdd:0"])
    """

    name = "openvino"

    def __init__(self, onnx_model: onnx.ModelProto) -> None:
        ov = _openvino()
        self._core = ov.Core()
        self._bytes = onnx_model.SerializeToString()
        self.output_names = [o.name for o in onnx_model.graph.output]
        self._compiled: dict[tuple[str, ...], Any] = {}  # openvino.CompiledModel
        try:
            self._model()  # refuse an unreadable model now, not in the middle of the comparison
        except RuntimeError as exc:
            raise ConversionError(
                f"OpenVINO {ov.__version__} cannot read the ONNX model: {_first_line(exc)}. "
                "Leave openvino out of --runtimes to check the other runtimes."
            ) from exc

    def _model(self) -> Any:
        return self._core.read_model(model=self._bytes)

    def _compile(self, taps: tuple[str, ...]) -> Any:
        if taps not in self._compiled:
            self._compiled.clear()
            model = self._model()
            known = {name for op in model.get_ops() for out in op.outputs() for name in out.get_names()}
            wanted = [t for t in taps if t in known and t not in self.output_names]
            if wanted:
                model.add_outputs(wanted)
            self._compiled[taps] = self._core.compile_model(model, "CPU", _CONFIG)
        return self._compiled[taps]

    def run(self, feeds: Feeds, taps: Sequence[str] = ()) -> Outputs:
        """Outputs (and the ``taps`` OpenVINO's graph still names: ONNX tensors) for ``feeds``."""
        try:
            results = self._compile(tuple(taps))(dict(feeds))
        except RuntimeError as exc:  # OpenVINO's refusal of a graph or a shape, not a verdict
            raise XverifyError(
                f"OpenVINO could not run the ONNX model: {_first_line(exc)}. Leave openvino out of "
                "--runtimes to check the other runtimes."
            ) from exc
        out: Outputs = {}
        for port, value in results.items():
            for name in port.get_names():
                if name in self.output_names or name in taps:
                    out[name] = np.asarray(value)
        return out


def _first_line(exc: Exception) -> str:
    """OpenVINO's message without its "Exception from src/..." source locations."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith("Exception from ")]
    return (said or lines or [type(exc).__name__])[0][:300]


SPEC = RuntimeSpec(
    name="openvino",
    label="OpenVINO",
    short="ov",
    taps="onnx",
    streams=False,
    rank=4,
    build=lambda subject: OpenVinoRuntime(subject.onnx_model),
    modules=("openvino",),
    install='pip install "xverify[openvino]"',
    dist="openvino",
)
