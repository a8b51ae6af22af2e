"""TensorFlow: the Keras model itself, called with ``training=False``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from xverify.errors import MissingDependencyError
from xverify.runtimes.contract import Feeds, Outputs, RuntimeSpec, Subject


class TensorflowRuntime:
    """Run a Keras model on named feeds; outputs are named like the ONNX conversion's.

    Example::

        outs = TensorflowRuntime(keras_model).run({"x": x})
    """

    name = "tensorflow"

    def __init__(self, keras_model: Any) -> None:
        try:
            import tensorflow  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError(
                "the tensorflow runtime needs TensorFlow: pip install 'xverify[keras]'"
            ) from exc
        from xverify.convert import keras_io

        self.model = keras_model
        in_specs, out_specs = keras_io(keras_model)
        self.input_names = [name for name, _, _ in in_specs]
        self.output_names = [name for name, _, _ in out_specs]

    def _call(self, model: Any, feeds: Feeds) -> list[np.ndarray]:
        args = [feeds[n] for n in self.input_names]
        from xverify.convert import structured_feed

        try:
            result = model(structured_feed(model, args), training=False)
        except Exception as exc:  # Keras itself cannot run the model: not a verdict, not our bug
            from xverify.errors import XverifyError

            first = str(exc).strip().splitlines()
            raise XverifyError(
                f"TensorFlow could not run the Keras model {self.model.name!r} "
                f"({type(exc).__name__}: {' '.join(first[:2])[:300]}); xverify compares against "
                "the model's own outputs, so it cannot check a model Keras cannot call. Check "
                "the model runs with model(x) first."
            ) from exc
        if isinstance(result, dict):
            result = list(result.values())
        elif not isinstance(result, (list, tuple)):
            result = [result]
        return [np.asarray(r) for r in result]

    def run(self, feeds: Feeds, taps: Sequence[str] = ()) -> Outputs:
        """Outputs for ``feeds``; ``taps`` are Keras layer names whose outputs to return too (one
        forward pass records them)."""
        if not taps:
            return dict(zip(self.output_names, self._call(self.model, feeds)))
        return self._recorded(tuple(taps), feeds)

    def _recorded(self, taps: tuple[str, ...], feeds: Feeds) -> Outputs:
        """The model's outputs and those of the layers named ``taps``, recorded while it runs.

        A tap model (``keras.Model(inputs, layer.output)``) cannot reach the layers of a nested
        model (their outputs belong to the inner model's graph: "Output ... is not connected to
        inputs"), so each tapped layer's ``call`` is wrapped for one forward pass and its output
        kept. A layer called more than once (shared, reused) gives its last inbound node's output,
        as the layer map takes that call's ONNX tensor.
        """
        from xverify.convert import flat_layers, patched_calls

        wanted = set(taps)
        seen: dict[str, list[Any]] = {}

        def record(layer: Any, result: Any) -> None:
            if layer.name in wanted:
                seen.setdefault(layer.name, []).append(
                    result[0] if isinstance(result, (list, tuple)) else result
                )

        layers = [la for la in flat_layers(self.model) if la.name in wanted]
        with patched_calls(layers, lambda index, layer, call: _recording(layer, call, record)):
            outputs = dict(zip(self.output_names, self._call(self.model, feeds)))
        by_name = {layer.name: layer for layer in layers}
        outputs.update(
            (name, np.asarray(seen[name][_last_call_position(self.model, by_name[name])]))
            for name in taps
            if name in seen
        )
        return outputs


def _last_call_position(model: Any, layer: Any) -> int:
    """Which of a layer's recorded calls is its last inbound node in ``model``'s graph (the call the
    layer map compares): Keras runs a functional graph depth by depth, so two calls at the same
    depth may run in either order. A layer called once, or not run by ``model`` itself, is its
    last call."""
    nodes_by_depth = getattr(model, "_nodes_by_depth", None)
    inbound = getattr(layer, "_inbound_nodes", [])
    if len(inbound) < 2 or not nodes_by_depth:
        return -1
    order = [
        node
        for depth in sorted(nodes_by_depth, reverse=True)
        for node in nodes_by_depth[depth]
        if node.operation is layer
    ]
    in_graph = [node for node in inbound if node in order]  # not calls on other graphs' inputs
    return order.index(in_graph[-1]) if in_graph else -1


def _recording(
    layer: Any, call: Callable[..., Any], record: Callable[[Any, Any], None]
) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = call(*args, **kwargs)
        record(layer, result)
        return result

    return wrapped


class SavedModelRuntime:
    """Run a SavedModel (``model.export()``) through its ``serving_default`` signature.

    Example::

        outs = SavedModelRuntime(tf.saved_model.load("exported/")).run({"x": x})
    """

    name = "tensorflow"

    def __init__(self, saved_model: Any) -> None:
        import tensorflow as tf

        self._tf = tf
        self.signature = saved_model.signatures["serving_default"]
        self._model = saved_model  # keeps the signature's variables alive
        _, kwargs = self.signature.structured_input_signature
        self.input_names = list(kwargs)
        self._dtypes = {name: spec.dtype for name, spec in kwargs.items()}
        self.output_names = list(self.signature.structured_outputs)

    def run(self, feeds: Feeds, taps: Sequence[str] = ()) -> Outputs:
        """Outputs by signature name (a SavedModel has no Keras layers to tap: ``taps`` unused)."""
        args = {n: self._tf.constant(feeds[n], dtype=self._dtypes[n]) for n in self.input_names}
        return {k: np.asarray(v) for k, v in self.signature(**args).items()}


def _build(subject: Subject) -> TensorflowRuntime | SavedModelRuntime:
    if subject.saved_model:
        return SavedModelRuntime(subject.keras_model)
    return TensorflowRuntime(subject.keras_model)


SPEC = RuntimeSpec(
    name="tensorflow",
    label="TensorFlow",
    short="tf",
    taps="keras",
    streams=False,
    rank=0,
    build=_build,
    modules=("tensorflow",),
    install='pip install "xverify[keras]"',
)
