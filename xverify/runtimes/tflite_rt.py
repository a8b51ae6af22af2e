"""TensorFlow Lite: the Keras model converted by TensorFlow's own ``TFLiteConverter`` (float32, no
quantization) and run on TensorFlow's interpreter (``pip install "xverify[tflite]"`` adds nothing:
TensorFlow brings both).

The outputs come from the interpreter as deployed (its default XNNPACK delegate). Taps come from a
second interpreter that keeps every tensor (``experimental_preserve_all_tensors``) and runs the
builtin kernels without delegates, since a delegate computes its subgraph's intermediates out of
the interpreter's sight. While converting, each layer's ``call`` runs in the name scope ``xvl<i>``
(as for tf2onnx), so TFLite's tensor names (fused ops join their names with ";") carry the layers'
tokens. A layer's tensor is the last one whose latest token is that layer and that is read outside
it; a layer the converter fused into a later one (Conv2D, BatchNormalization and ReLU become one
CONV_2D) has none, and is compared without TFLite.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from xverify.errors import ConversionError
from xverify.runtimes.contract import Feeds, Outputs, RuntimeSpec, RuntimeUnavailable, Subject

Shape = tuple[int | None, ...]

_TOKENS = re.compile(r"(?:^|/)xvl(\d+)(?:_\d+)?/")
_OUTPUT = re.compile(r"(?:output|Identity)(?:_(\d+))?")


class TfliteRuntime:
    """Convert a Keras model with ``tf.lite.TFLiteConverter`` and run it on TensorFlow's interpreter.

    Example::

        outs = TfliteRuntime(keras_model).run({"x": x}, taps=["dense"])
    """

    name = "tflite"

    def __init__(self, keras_model: Any) -> None:
        from xverify.convert import flat_layers, keras_io

        in_specs, out_specs = keras_io(keras_model)
        self.input_names = [name for name, _, _ in in_specs]
        self.output_names = [name for name, _, _ in out_specs]
        self._layers = flat_layers(keras_model)
        self._shapes = {la.name: _keras_shape(la) for la in self._layers}
        self.flatbuffer, why = _convert(keras_model, self._layers)
        self.batch_one = why is not None
        self._interpreters: dict[tuple[bool, tuple[Shape, ...]], Any] = {}  # tf.lite.Interpreter
        self.notes: list[str] = []
        if why:
            self.notes.append(
                "tflite: TFLiteConverter could not convert the model with a free batch dimension "
                f"({why}); it was converted with batch 1 and ran one sample at a time"
            )

    def run(self, feeds: Feeds, taps: Sequence[str] = ()) -> Outputs:
        """Outputs for ``feeds`` (keyed by Keras input names), and the ``taps`` (Keras layer names)
        that keep a tensor of their own in the TFLite model."""
        if not self.batch_one:
            return self._invoke(feeds, taps)
        rows = len(next(iter(feeds.values())))
        parts = [self._invoke({k: v[i : i + 1] for k, v in feeds.items()}, taps) for i in range(rows)]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _invoke(self, feeds: Feeds, taps: Sequence[str]) -> Outputs:
        shapes = tuple(np.shape(feeds[n]) for n in self.input_names)
        interpreter = self._interpreter(bool(taps), shapes)
        inputs, outputs = _signature(interpreter)
        for name, key in zip(self.input_names, _ordered(list(inputs), self.input_names)):
            interpreter.set_tensor(inputs[key], np.asarray(feeds[name], _dtype(interpreter, inputs[key])))
        interpreter.invoke()
        out = {
            name: interpreter.get_tensor(outputs[key]).copy()
            for name, key in zip(self.output_names, _ordered(list(outputs), self.output_names))
        }
        if taps:
            held = _layer_tensors(interpreter, self._layers)
            for layer in taps:
                index = held.get(layer)
                if index is None:
                    continue
                value = interpreter.get_tensor(index)
                if _fits(value.shape, self._shapes.get(layer)):
                    out[layer] = value.copy()
        return out

    def _interpreter(self, tapped: bool, shapes: tuple[Shape, ...]) -> Any:
        key = (tapped, shapes)
        if key not in self._interpreters:
            self._interpreters = {k: v for k, v in self._interpreters.items() if k[0] != tapped}
            self._interpreters[key] = _interpreter(self.flatbuffer, tapped, shapes, self.input_names)
        return self._interpreters[key]


def _convert(keras_model: Any, layers: Sequence[Any]) -> tuple[bytes, str | None]:
    """The flatbuffer, and None, or why it was converted with batch 1 instead.

    ``from_keras_model`` first, as a deployment would. Keras 3's recurrent layers keep TensorList
    ops whose element shape depends on the free batch dimension, which the builtin ops cannot lower
    (and TensorFlow's interpreter has no Flex delegate): then the model is traced with batch 1,
    frozen and converted, and the samples run one at a time."""
    import tensorflow as tf

    from xverify.convert import _layer_scopes

    with _layer_scopes(layers), _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return tf.lite.TFLiteConverter.from_keras_model(keras_model).convert(), None
        except Exception as exc:
            why = _first_line(exc)
        try:
            return _convert_batch_one(keras_model), why
        except Exception as exc:
            raise ConversionError(
                f"TensorFlow's TFLiteConverter could not convert the Keras model ({_first_line(exc)}). "
                "Leave tflite out of --runtimes to check the other runtimes."
            ) from exc


def _convert_batch_one(keras_model: Any) -> bytes:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from xverify.convert import keras_io, structured_feed

    in_specs, _ = keras_io(keras_model)
    signature = [
        tf.TensorSpec((1, *shape[1:]), tf.as_dtype(dtype), name=name) for name, shape, dtype in in_specs
    ]

    def forward(*args: Any) -> Any:
        result = keras_model(structured_feed(keras_model, args), training=False)
        return list(result.values()) if isinstance(result, dict) else result

    concrete = tf.function(forward, input_signature=signature).get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    flatbuffer: bytes = tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert()
    return flatbuffer


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keras' export prints its endpoints on stdout, and the converter's MLIR errors go to fd 2
    from C++ (the first attempt may fail by design): both are silenced while converting."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {' '.join(lines[:1])[:300]}"


def _interpreter(flatbuffer: bytes, tapped: bool, shapes: tuple[Shape, ...], input_names: list[str]) -> Any:
    import tensorflow as tf

    options: dict[str, Any] = {}
    if tapped:
        options = {
            "experimental_preserve_all_tensors": True,
            "experimental_op_resolver_type": tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        }
    # TensorFlow 2.21 still ships tf.lite.Interpreter, with a deprecation warning; creating the
    # XNNPACK delegate logs a line on fd 2.
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=flatbuffer, **options)
        inputs, _ = _signature(interpreter)
        for key, shape in zip(_ordered(list(inputs), input_names), shapes):
            interpreter.resize_tensor_input(inputs[key], list(shape))
        interpreter.allocate_tensors()
    return interpreter


def _signature(interpreter: Any) -> tuple[dict[str, int], dict[str, int]]:
    """The serving signature's inputs and outputs, name -> tensor index (a converted concrete
    function has no signature: its input and output tensors then). A SignatureRunner would hold a
    reference to the interpreter's internals, and ``invoke`` refuses to run while one does."""
    signatures = interpreter._get_full_signature_list()
    if signatures:
        signature = next(iter(signatures.values()))
        return dict(signature["inputs"]), dict(signature["outputs"])
    inputs = {d["name"].split(":")[0]: d["index"] for d in interpreter.get_input_details()}
    return inputs, {d["name"]: d["index"] for d in interpreter.get_output_details()}


def _dtype(interpreter: Any, index: int) -> Any:
    return next(d["dtype"] for d in interpreter.get_input_details() if d["index"] == index)


def _ordered(keys: list[str], names: list[str]) -> list[str]:
    """The signature's keys in the Keras model's order (its own names, ``output_0``, ``output_1``...,
    or as listed)."""
    if set(keys) == set(names):
        return names
    numbered = [m for m in (_OUTPUT.fullmatch(k) for k in keys) if m]
    if len(numbered) == len(keys):
        return [k for _, k in sorted(zip((int(m.group(1) or 0) for m in numbered), keys))]
    return keys


def _tokens(name: str) -> set[int]:
    return {int(m) for m in _TOKENS.findall(name)}


def _layer_tensors(interpreter: Any, layers: Sequence[Any]) -> dict[str, int]:
    """Keras layer name -> index of the TFLite tensor that holds its output.

    An op output whose name has no token (a graph output) takes those of the op's weights (the
    layer whose Dense it computes) or, with none, of its computed inputs (the Softmax TFLite splits
    from a Dense). A tensor belongs to its latest token's layer, and is that layer's
    output when a graph output or read by an op outside that layer; the last such tensor in
    execution order wins (a layer called twice: its last call)."""
    ops = interpreter._get_ops_details()
    tokens = {d["index"]: _tokens(d["name"]) for d in interpreter.get_tensor_details()}
    made = {t for op in ops for t in op["outputs"]}
    for op in ops:
        weights = set().union(*(tokens.get(i, set()) for i in op["inputs"] if i >= 0 and i not in made))
        computed = set().union(*(tokens.get(i, set()) for i in op["inputs"] if i in made))
        for t in op["outputs"]:
            if not tokens.get(t):
                tokens[t] = weights or computed
    readers: dict[int, list[int]] = {}
    for op in ops:
        for t in op["inputs"]:
            readers.setdefault(t, []).extend(op["outputs"])
    graph_outputs = {d["index"] for d in interpreter.get_output_details()}
    found: dict[int, int] = {}
    for op in ops:
        for t in op["outputs"]:
            if not tokens.get(t):
                continue
            owner = max(tokens[t])
            if t in graph_outputs or any(owner not in tokens.get(r, set()) for r in readers.get(t, [])):
                found[owner] = t
    return {layers[i].name: t for i, t in found.items() if i < len(layers)}


def _keras_shape(layer: Any) -> Shape | None:
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # a layer called several times has no single output
        return None


def _fits(shape: Shape, keras_shape: Shape | None) -> bool:
    """TFLite keeps Keras' layout: a tensor of another shape is not the layer's output."""
    if keras_shape is None:
        return True
    return len(shape) == len(keras_shape) and all(k is None or k == s for s, k in zip(shape, keras_shape))


def _build(subject: Subject) -> TfliteRuntime:
    if subject.keras_model is None or subject.saved_model:
        raise RuntimeUnavailable("xverify converts a Keras model for TFLite, and the model is not one")
    return TfliteRuntime(subject.keras_model)


SPEC = RuntimeSpec(
    name="tflite",
    label="TensorFlow Lite",
    short="tflite",
    taps="keras",
    streams=False,
    rank=3,
    build=_build,
    modules=("tensorflow",),
    install='pip install "xverify[tflite]"',
)
