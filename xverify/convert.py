"""Keras -> ONNX through tf2onnx: the only module that imports tf2onnx.

``tf2onnx.convert.from_keras`` fails on Keras 3 models (KeyError 'keras_tensor_N'), so the model is
wrapped in a ``tf.function`` with an explicit input signature (batch dimension None) and converted with
``from_function``; the function returns a dict so the ONNX outputs carry the Keras output names.

While tracing, each Keras layer's ``call`` runs inside a name scope ``xvl<index>``, so every ONNX node a
layer produces can be traced back to it whatever TensorFlow's scope uniquification did; the table of
layers goes into the model's ``metadata_props`` under ``xverify.layers`` (see ``layers.py``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xverify.budget import release_freed_memory
from xverify.errors import ConversionError, UsageError, gist
from xverify.tf2onnx_steps import convert_graph_def, freeze

if TYPE_CHECKING:
    import onnx

DEFAULT_OPSET = 17
# Bumped whenever what convert() does to tf2onnx's output changes (scopes, metadata, freezing):
# part of the cache key, so a conversion cached by an older revision is never reused.
CONVERSION_REVISION = 3
MIN_OPSET, MAX_OPSET = 13, 18
LAYER_TOKEN = "xvl"
LAYERS_METADATA_KEY = "xverify.layers"
# The outermost layer token in a node or tensor name (TensorFlow may suffix a reused scope "_N").
_TOKEN = re.compile(rf"(?:^|/){LAYER_TOKEN}(\d+)(?:_\d+)?/")


TensorSpec = tuple[str, tuple[int | None, ...], str]  # (name, shape with batch None, dtype)


def keras_io(model: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The Keras model's inputs and outputs as ``[(name, shape, dtype)]`` lists (batch dim None)."""
    try:
        inputs = list(model.inputs)
        outputs = list(model.outputs)
    except (AttributeError, ValueError) as exc:
        raise ConversionError(
            f"the Keras model {model.name!r} has no defined inputs ({exc}); "
            "build it with keras.Input(...) or call it once before saving."
        ) from exc
    names = getattr(model, "output_names", None) or [t.name for t in outputs]
    in_specs = [(_tf_name(t.name), (None, *tuple(t.shape)[1:]), str(t.dtype)) for t in inputs]
    out_specs = [(_tf_name(n), (None, *tuple(t.shape)[1:]), str(t.dtype)) for n, t in zip(names, outputs)]
    return in_specs, out_specs


def structured_feed(model: Any, args: Sequence[Any]) -> Any:
    """Arrange positional inputs the way the model was built: a dict, a list or a lone tensor
    (Keras warns, and may misroute, when the structure differs)."""
    structure = getattr(model, "_inputs_struct", None)
    if isinstance(structure, dict):
        return dict(zip(structure.keys(), args))
    if isinstance(structure, (list, tuple)):
        return list(args)
    return args[0] if len(args) == 1 else list(args)


def _tf_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


def flat_layers(model: Any) -> list[Any]:
    """The model's layers, with nested Functional/Sequential models opened up, minus InputLayers."""
    import keras

    out: list[Any] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and hasattr(layer, "layers") and layer.layers:
            out.extend(flat_layers(layer))
        elif not isinstance(layer, keras.layers.InputLayer):
            out.append(layer)
    return out


@contextlib.contextmanager
def patched_calls(
    layers: Sequence[Any], wrap: Callable[[int, Any, Callable[..., Any]], Callable[..., Any]]
) -> Iterator[None]:
    """Replace each layer's ``call`` by ``wrap(index, layer, call)`` (restored on exit)."""
    patched = []
    for index, layer in enumerate(layers):
        had_own = "call" in layer.__dict__
        original = layer.call
        object.__setattr__(layer, "call", functools.wraps(original)(wrap(index, layer, original)))
        patched.append((layer, had_own, original))
    try:
        yield
    finally:
        for layer, had_own, original in patched:
            if had_own:
                object.__setattr__(layer, "call", original)
            else:
                object.__delattr__(layer, "call")


def _layer_scopes(layers: Sequence[Any]) -> contextlib.AbstractContextManager[None]:
    """Run each layer's ``call`` inside a name scope ``xvl<i>`` (restored on exit)."""
    import tensorflow as tf

    def wrap(index, layer, original):
        def call(*args, **kwargs):
            with tf.name_scope(f"{LAYER_TOKEN}{index}"):
                return original(*args, **kwargs)

        return call

    return patched_calls(layers, wrap)


_erfc_registered = False


def _register_erfc():
    """Exact GELU lowers to TensorFlow's Erfc, which tf2onnx 1.17 cannot convert: emit 1 - Erf(x)."""
    global _erfc_registered
    if _erfc_registered:
        return
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class _Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            node.type = "Erf"
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
            sub = ctx.insert_new_node_on_output(
                "Sub", node.output[0], name=utils.make_name(f"{node.name}_erfc")
            )
            ctx.replace_inputs(sub, [one.output[0], node.output[0]])
            ctx.copy_shape(node.output[0], sub.output[0])

    _erfc_registered = True


def check_opset(opset: int | None) -> int:
    """Validate an opset request; ``None`` means the default."""
    if opset is None:
        return DEFAULT_OPSET
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise UsageError(
            f"--opset {opset}: expected an opset from {MIN_OPSET} to {MAX_OPSET} "
            f"(tf2onnx 1.17 accepts up to {MAX_OPSET}; default {DEFAULT_OPSET})."
        )
    return int(opset)


def convert(model: Any, opset: int | None = None) -> onnx.ModelProto:
    """Convert a Keras model to ONNX.

    Args:
        model: a Keras 3 model (functional or sequential, single or multiple inputs/outputs).
        opset: ONNX opset, 13 to 18 (default 17).

    Returns:
        An ``onnx.ModelProto`` whose inputs and outputs are named after the Keras model's.

    Raises:
        ConversionError: tf2onnx failed, or left a TensorFlow op unconverted (the op and its Keras
            layer are named).
    """
    import tensorflow as tf

    opset = check_opset(opset)
    _register_erfc()
    release_freed_memory()  # loading the model read its weights file whole: give that memory back
    in_specs, out_specs = keras_io(model)
    signature = [tf.TensorSpec(shape, tf.as_dtype(dtype), name=name) for name, shape, dtype in in_specs]
    out_names = [name for name, _, _ in out_specs]
    layers = flat_layers(model)

    def forward(*args):
        result = model(structured_feed(model, args), training=False)
        if isinstance(result, dict):
            result = [result[k] for k in result]
        elif not isinstance(result, (list, tuple)):
            result = [result]
        return {name: tf.identity(t) for name, t in zip(out_names, result)}

    function = tf.function(forward, input_signature=signature)
    from xverify.convert_functions import plain_grouped_convolutions

    with _layer_scopes(layers), plain_grouped_convolutions(), _quiet_tf2onnx() as log:
        try:
            onnx_model = _from_function(function, opset)
        except Exception as exc:
            raise ConversionError(
                f"tf2onnx could not convert the model ({gist(exc)}). Expected a model that tf2onnx can "
                "trace; try another --opset, or run with --debug for TensorFlow's whole trace."
            ) from exc
    _fail_on_unconverted(onnx_model, layers, log.getvalue())
    _fail_on_dangling_inputs(onnx_model, layers, [name for name, _, _ in in_specs])
    _restore_layer_scopes(onnx_model)
    _set_metadata(onnx_model, layers)
    return onnx_model


def _from_function(function, opset: int):
    """``tf2onnx.convert.from_function``, except that only the signature's tensors become inputs.

    tf2onnx makes an ONNX input of every non-resource placeholder of the concrete function, and that
    includes the placeholders of captured constant tensors: Keras 3's ``Normalization`` (the first
    layers of EfficientNet) turns its mean and variance into eager tensors when built, so they were
    exported as two extra required inputs. Captured tensors are frozen into constants by the same
    ``convert_variables_to_constants_v2`` that freezes the variables.
    """
    import tensorflow as tf
    from tf2onnx import convert as tfconvert

    concrete = function.get_concrete_function()
    captured = {t.ref() for t in concrete.graph.internal_captures}
    input_names = [
        t.name for t in concrete.inputs if t.ref() not in captured and t.dtype != tf.dtypes.resource
    ]
    output_names = [t.name for t in concrete.outputs if t.dtype != tf.dtypes.resource]
    renames = tfconvert.tensor_names_from_structed(concrete, input_names, output_names)
    with tf.device("/cpu:0"):
        graph_def, values = freeze(concrete, input_names, output_names)
        return convert_graph_def(  # what from_function runs after freezing, lighter on memory
            graph_def,
            name=concrete.name,
            continue_on_error=True,
            opset=opset,
            input_names=input_names,
            output_names=output_names,
            tensors_to_rename=renames,
            const_node_values=values,
        )


@contextlib.contextmanager
def _quiet_tf2onnx():
    """Capture tf2onnx's log (it logs, rather than raises, on unsupported ops)."""
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    loggers = [logging.getLogger(n) for n in ("tf2onnx", "tensorflow")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    propagate = [lg.propagate for lg in loggers]
    for lg in loggers:
        lg.propagate = False
    try:
        yield stream
    finally:
        for lg, level, prop in zip(loggers, levels, propagate):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = prop


def layer_index_of(node_name: str) -> int | None:
    """The index of the flat Keras layer whose scope token is outermost in ``node_name``."""
    match = _TOKEN.search(node_name)
    return int(match.group(1)) if match else None


def _restore_layer_scopes(onnx_model) -> None:
    """Put the layer scope back on nodes that tf2onnx named afresh when it fused them.

    A Conv fused with its BiasAdd comes out as ``Conv__28``, with no ``xvl<i>`` token, so its layer
    had no ONNX tensor. Such a node is renamed into the scope of the weights it consumes. Where it
    fused two layers (a SeparableConv2D's pointwise Conv with the next BatchNormalization: weights
    of both), it computes the later layer's output, so it takes the scope of the latest layer whose
    weights (float tensors of more than one element, not the scalars tf2onnx shares) it reads.
    """
    graph = onnx_model.graph
    inits = {i.name: i for i in graph.initializer}
    names = {node.name for node in graph.node}
    for node in graph.node:
        if not node.name or layer_index_of(node.name) is not None:
            continue
        scopes: dict[int, str] = {}
        weights: dict[int, str] = {}
        for name in node.input:
            match = _TOKEN.search(name) if name in inits else None
            if match:
                scopes.setdefault(int(match.group(1)), name[: match.end()])
                if is_weight(inits[name]):
                    weights.setdefault(int(match.group(1)), name[: match.end()])
        if len(scopes) > 1:
            scopes = {max(weights): weights[max(weights)]} if weights else {}
        if len(scopes) == 1:
            renamed = next(iter(scopes.values())) + node.name
            if renamed not in names:
                names.add(renamed)
                node.name = renamed


def is_float(tensor) -> bool:
    """A floating-point ONNX tensor (initializer)."""
    from onnx import TensorProto

    return tensor.data_type in (
        TensorProto.FLOAT,
        TensorProto.DOUBLE,
        TensorProto.FLOAT16,
        TensorProto.BFLOAT16,
    )


def is_weight(init) -> bool:
    """A float initializer of more than one element: a layer's weight, not a shared scalar/shape."""
    return is_float(init) and math.prod(init.dims) > 1


def _fail_on_unconverted(onnx_model, layers, log_text: str):
    import onnx

    domains = {o.domain: o.version for o in onnx_model.opset_import}
    bad = []
    for node in onnx_model.graph.node:
        domain = node.domain or ""
        if (
            domain not in ("", "ai.onnx", "ai.onnx.ml")
            or not onnx.defs.has(node.op_type, domain)
            or onnx.defs.get_schema(node.op_type, domains.get(domain, 1), domain).deprecated
        ):
            bad.append(node)
    if not bad:
        return
    from xverify.convert_functions import unconverted_message

    raise ConversionError(unconverted_message(bad, layers, log_text, layer_index_of))


def _fail_on_dangling_inputs(onnx_model, layers, expected):
    """An ONNX input the Keras model does not have (a weight or constant exported as an input
    instead of being frozen) makes the model unrunnable on its own: name it and its layer."""
    graph = onnx_model.graph
    initialized = {t.name for t in graph.initializer}
    dangling = [i.name for i in graph.input if i.name not in expected and i.name not in initialized]
    if not dangling:
        return
    details = []
    for name in dangling[:5]:
        consumer = next((n.name for n in graph.node if name in n.input), "")
        index = layer_index_of(name)
        index = layer_index_of(consumer) if index is None else index
        where = (
            f"a value of Keras layer {layers[index].name!r} ({type(layers[index]).__name__})"
            if index is not None and index < len(layers)
            else f"consumed by node {consumer!r}"
            if consumer
            else "consumed by no node"
        )
        details.append(f"{name!r} ({where})")
    raise ConversionError(
        f"the ONNX model has input(s) the Keras model does not have: {'; '.join(details)}. "
        f"Expected only {list(expected)}. tf2onnx exported a captured value as an input instead "
        "of freezing it into a constant, so the ONNX model is not self-contained; report it as an "
        "xverify bug with the layer named."
    )


def _set_metadata(onnx_model, layers):
    table = [
        {"index": i, "name": layer.name, "class": type(layer).__name__} for i, layer in enumerate(layers)
    ]
    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = LAYERS_METADATA_KEY, json.dumps(table)
    onnx_model.producer_name = "xverify (tf2onnx)"


# A protobuf message cannot be serialized past 2 GiB; keep a margin for the graph around the weights.
PROTOBUF_LIMIT = 2**31 - 2**26


def save_onnx(onnx_model, path, *, inputs=(), limit: int = PROTOBUF_LIMIT) -> None:
    """Write an ONNX model, refusing to overwrite any of ``inputs`` (xverify never writes over them).

    A model over ``limit`` bytes (protobuf's 2 GiB) is written with its weights as ONNX external
    data in ``<path>.data`` beside it (the model's tensors are moved there, so the in-memory model
    no longer holds them).
    """
    import os

    import onnx

    external = onnx_model.ByteSize() > limit
    data = f"{path}.data"
    targets = {os.path.realpath(path)} | ({os.path.realpath(data)} if external else set())
    if any(os.path.realpath(p) in targets for p in inputs if p):
        raise UsageError(f"{path}: refusing to overwrite an input file; choose another output path.")
    if external:
        onnx.save_model(
            onnx_model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=os.path.basename(data),
            size_threshold=1024,
        )
    else:
        onnx.save(onnx_model, str(path))


def convert_saved_model(path: str, opset: int | None = None) -> onnx.ModelProto:
    """Convert a SavedModel directory (``model.export()``) through tf2onnx's SavedModel path.

    This is the route of ``python -m tf2onnx.convert --saved-model``: the ``serving_default``
    signature is frozen and converted; ONNX inputs and outputs take the signature's names.
    """
    import tensorflow as tf
    from tf2onnx import tf_loader

    opset = check_opset(opset)
    _register_erfc()
    with _quiet_tf2onnx() as log:
        try:
            graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
                str(path),
                None,
                None,
                tag=None,
                signatures=["serving_default"],
                return_initialized_tables=True,
                return_tensors_to_rename=True,
            )
            with tf.device("/cpu:0"):
                onnx_model = convert_graph_def(  # the tf2onnx CLI's own route, lighter on memory
                    graph_def,
                    name=str(path),
                    opset=opset,
                    input_names=inputs,
                    output_names=outputs,
                    tensors_to_rename=renames,
                    initialized_tables=tables,
                )
        except Exception as exc:
            raise ConversionError(
                f"{path}: tf2onnx could not convert the SavedModel ({gist(exc)}). Try another "
                "--opset, or run with --debug for the whole trace."
            ) from exc
    _fail_on_unconverted(onnx_model, [], log.getvalue())
    return onnx_model
