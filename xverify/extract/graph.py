"""Which Keras layer each ONNX node and initializer belongs to, from the ``xvl<i>`` scope tokens."""

from __future__ import annotations

from xverify.convert import layer_index_of


def node_layer(node, producers: dict, inits, depth: int = 3) -> int | None:
    """A node's layer: its scope token, else its initializers' tokens, else its inputs' producers'.

    tf2onnx names some fused nodes afresh (``LSTM__33``, ``Conv__52``), dropping the scope.
    """
    tokens = [layer_index_of(node.name)] + [layer_index_of(n) for n in node.input if n in inits]
    for name in node.input:
        if name not in inits:
            tokens.append(layer_index_of(name))
            if tokens[-1] is None and depth and name in producers:
                tokens.append(node_layer(producers[name], producers, inits, depth - 1))
    return next((t for t in tokens if t is not None), None)


def owned_initializers(onnx_model) -> dict[int, set[str]]:
    """Layer index -> names of the initializers its nodes consume or its scope names."""
    graph = onnx_model.graph
    inits = {i.name for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    owned: dict[int, set[str]] = {}
    for node in graph.node:
        index = node_layer(node, producers, inits)
        if index is not None:
            owned.setdefault(index, set()).update(n for n in node.input if n in inits)
    for name in inits:
        if (index := layer_index_of(name)) is not None:
            owned.setdefault(index, set()).add(name)
    return owned
