"""tf2onnx's conversion steps, run so that the weights are not copied dozens of times over.

``tf2onnx.convert.from_function`` peaks at tens of times the weight bytes (benchmarks/README.md,
``convert_memory.py``; upstream, onnx/tensorflow-onnx#1562 is a conversion killed for memory, and
the per-optimizer deepcopy below shows in the tracebacks of #885). Measured stage by stage, the
copies come from:

1. freezing (``convert_variables_to_constants_v2``), which rebuilds a concrete function from the
   frozen GraphDef and exports it again: two more copies. ``freeze`` uses tf2onnx's ``large_model``
   freezing instead, which returns the GraphDef only;
2. grappler, which copies the whole GraphDef several times over. The large constants leave the
   GraphDef for a side table before it and stand in as placeholders of their type and shape, so
   they take part in no grappler rewrite; tf2onnx's own folding (``compute_const_folding_using_tf``,
   TensorFlow's kernels again) then folds what reads only constants, reading the side table (the
   ``const_node_values`` of tf2onnx's ``large_model`` route);
3. ``optimizer.optimize_graph``, which deep-copies the whole graph, weights included, before each
   of its 12 optimizers in every round, to roll back a failing one; the copies are reference
   cycles that outlive their round. ``optimize_graph`` here runs the same optimizers in the same
   order with the same rollback, but the copies share the constants' values (tf2onnx replaces a
   constant's attribute, ``Node.set_tensor_value``, never edits it) and each is collected at once;
4. each tf2onnx ``Node`` mirroring its attributes in a ``NodeProto`` rebuilt after every optimizer:
   a constant's mirror is never read (``make_graph`` takes initializers from the attributes), so
   while converting it leaves the tensor out (``_constants_kept_once``).

tests/test_convert.py checks that the optimizers leave the graph as tf2onnx's own ``optimize_graph``
does, and that the whole conversion computes what plain tf2onnx's computes.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging

from xverify.budget import release_freed_memory

logger = logging.getLogger(__name__)


_LARGE = 1000  # bytes: constants above this leave the GraphDef (tf2onnx's compress_graph_def cut)


def freeze(concrete, input_names, output_names):
    """``tf2onnx.tf_loader.from_function`` (freeze the variables, then grappler), with the large
    constants kept out of grappler (points 1 and 2 of the module docstring).

    Returns:
        ``(graph_def, values)``: the optimized GraphDef, its large constants empty, and their bytes
        by node name (tf2onnx's ``const_node_values``).
    """
    import tensorflow as tf
    from tf2onnx import tf_loader

    graph_def = tf_loader.fix_freezing_errors_part2(
        tf_loader.convert_variables_to_constants_large_model(concrete)
    )
    values = _constants_to_placeholders(graph_def)
    release_freed_memory()
    with tf.Graph().as_default():  # grappler exports a meta graph: not in eager mode
        graph_def = tf_loader.tf_optimize(input_names, output_names, graph_def)
    _placeholders_to_constants(graph_def, values)
    return graph_def, values


def _constants_to_placeholders(graph_def) -> dict:
    values = {}
    for node in graph_def.node:
        if node.op != "Const" or len(node.attr["value"].tensor.tensor_content) <= _LARGE:
            continue
        tensor = node.attr["value"].tensor
        values[node.name] = tensor.tensor_content
        dtype, shape = tensor.dtype, tensor.tensor_shape
        node.op = "Placeholder"
        node.ClearField("attr")
        node.attr["dtype"].type = dtype
        node.attr["shape"].shape.CopyFrom(shape)
    return values


def _placeholders_to_constants(graph_def, values) -> None:
    for node in graph_def.node:
        if node.op != "Placeholder" or node.name not in values:
            continue
        dtype, shape = node.attr["dtype"].type, node.attr["shape"].shape
        node.op = "Const"
        node.ClearField("attr")
        node.attr["dtype"].type = dtype
        node.attr["value"].tensor.dtype = dtype
        node.attr["value"].tensor.tensor_shape.CopyFrom(shape)


def convert_graph_def(
    graph_def,
    *,
    name,
    opset,
    input_names,
    output_names,
    tensors_to_rename,
    continue_on_error=False,
    initialized_tables=None,
    const_node_values=None,
):
    """What ``tf2onnx.convert._convert_common`` does with a frozen graph, with fewer weight copies.

    Args:
        const_node_values: the large constants' bytes by node name, if ``graph_def``'s are already
            out (``freeze``); otherwise they are taken out of ``graph_def`` here, emptying it.

    Returns:
        The ``onnx.ModelProto``.
    """
    import tensorflow as tf
    from tf2onnx.tf_utils import compress_graph_def
    from tf2onnx.tfonnx import process_tf_graph

    if const_node_values is None:
        const_node_values = compress_graph_def(graph_def)
    with tf.Graph().as_default() as tf_graph, _constants_kept_once():
        tf.import_graph_def(graph_def, name="")
        graph = process_tf_graph(
            tf_graph,
            continue_on_error=continue_on_error,
            opset=opset,
            input_names=input_names,
            output_names=output_names,
            tensors_to_rename=tensors_to_rename,
            const_node_values=const_node_values,
            initialized_tables=initialized_tables,
        )
        const_node_values.clear()  # the ONNX graph holds its own copies now
        release_freed_memory()
        graph = optimize_graph(graph)
        release_freed_memory()
        return graph.make_model(f"converted from {name}")


@contextlib.contextmanager
def _constants_kept_once():
    """Keep each constant's tensor in its node's attributes only, not also in the node's proto.

    A tf2onnx ``Node`` keeps its attributes twice: in a dict, and in an ONNX ``NodeProto`` that
    ``update_proto`` rebuilds from the dict after every optimizer, copying every constant's tensor
    into it each time (and into every rollback copy). A constant's proto is never read: its
    tensor reaches the model through ``make_graph``'s initializers, which read the dict. So while
    converting, a constant's proto leaves its ``value`` out.
    """
    from tf2onnx.graph import Node

    original = Node.get_onnx_attrs

    def get_onnx_attrs(self, external_tensor_storage=None):
        attrs = original(self, external_tensor_storage)
        if self.is_const():
            attrs.pop("value", None)
        return attrs

    Node.get_onnx_attrs = get_onnx_attrs
    try:
        yield
    finally:
        Node.get_onnx_attrs = original


def optimize_graph(graph):
    """``tf2onnx.optimizer.optimize_graph(graph, catch_errors=True)``, with light rollback copies."""
    from tf2onnx.optimizer import _get_optimizers

    optimizers = _get_optimizers()
    # A full collection costs ~0.4 s in a process that holds TensorFlow, 25 of them per model:
    # worth it where a dropped copy is large, not for a model of a few hundred kilobytes.
    collect = _large(graph)
    again, iteration = True, 0
    while again:
        again = False
        for name, factory in optimizers.items():
            try:
                current = copy.deepcopy(graph, _shared_constants(graph))
                optimizer = factory()
                graph = optimizer.optimize(current, iteration) or graph
                again = again or optimizer.graph_been_opt
            except Exception:  # as tf2onnx does: a failing optimizer is skipped, its copy dropped
                logger.warning("tf2onnx optimizer %s failed and was skipped", name, exc_info=True)
            current = optimizer = None
            if collect:
                gc.collect()  # the dropped graph is a web of reference cycles: free it now
                release_freed_memory()
        iteration += 1
    try:
        graph.topological_sort(graph.get_nodes())
    except Exception:  # as tf2onnx does
        logger.warning("tf2onnx could not sort the optimized graph", exc_info=True)
    return graph


_LARGE_GRAPH_BYTES = 16 << 20
_LARGE_GRAPH_NODES = 1000


def _large(graph) -> bool:
    """Whether the graph's constants or nodes are many enough that its dropped copies matter."""
    constants = _shared_constants(graph).values()
    if sum(1 for _ in graph.get_nodes()) >= _LARGE_GRAPH_NODES:
        return True
    return sum(value.t.ByteSize() for value in constants if value.HasField("t")) >= _LARGE_GRAPH_BYTES


def _shared_constants(graph) -> dict:
    """A ``deepcopy`` memo that maps each constant's value attribute (and in subgraphs) to itself."""
    memo = {}
    pending = [graph]
    while pending:
        current = pending.pop()
        for node in current.get_nodes():
            value = node.attr.get("value") if node.is_const() else None
            if value is not None:
                memo[id(value)] = value
            for body in (current.contained_graphs.get(node.name) or {}).values():
                pending.append(body)
    return memo
