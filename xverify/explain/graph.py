"""A model's own graph as a flat list of layer calls, whatever way the model was written.

Keras keeps the graph of a functional model in its nodes (one per call of a layer), and a built
``Sequential`` keeps one in a hidden functional model. Reading those nodes, rather than
``layer.input``/``layer.output``, follows every form: a Sequential written with ``input_dim=``,
``input_shape=`` or an ``Input`` (whose layers may carry extra nodes from being built twice), a
model nested in another (flattened into its layers), and a shared layer (one call per use).
"""

from __future__ import annotations

from dataclasses import dataclass

from xverify.errors import InputDataError


@dataclass(frozen=True)
class Call:
    """One call of a layer in the flattened graph.

    ``inputs``/``outputs`` are keys of the values computed so far: the same symbolic tensor reached
    through two calls of a nested model gets two keys (the call's ``scope`` is part of the key).
    """

    layer: object  # the Keras layer
    node: object  # its Keras node (None in a plain chain): holds the call's arguments
    inputs: tuple
    outputs: tuple
    label: str  # the layer's name, "outer/inner" inside a nested model
    repeat_of: str | None = None  # a shared layer's later calls name its first call

    @property
    def kind(self) -> str:
        return type(self.layer).__name__


@dataclass(frozen=True)
class Graph:
    """The calls in an order that computes every input before it is used."""

    calls: tuple
    input_key: tuple
    output_keys: tuple


def functional_of(model):
    """The functional graph behind ``model``: itself, a built Sequential's inner one, or None."""
    if type(model).__name__ == "Sequential" or hasattr(model, "_functional"):
        return getattr(model, "_functional", None)
    return model if hasattr(model, "_nodes_by_depth") else None


def ensure_built(model, n_values: int, where: str):
    """Build a Sequential that was never given an input shape, for ``n_values`` inputs per sample."""
    if functional_of(model) is not None or type(model).__name__ != "Sequential":
        return
    try:
        model.build((None, n_values))
    except Exception as exc:  # layers that cannot take a flat vector: the shape is the user's call
        raise InputDataError(
            f"{where}: the Sequential model has no input shape and cannot be "
            f"built for {n_values} input value(s) ({exc}). Build it with "
            "model.build((None, ...)) or start it with keras.Input(shape)."
        ) from exc


def graph_of(model) -> Graph | None:
    """The flattened graph of ``model``, or None for a subclassed model (its call is Python code)."""
    functional = functional_of(model)
    if functional is None:
        return None
    calls: list[Call] = []
    seen: dict[int, str] = {}
    key = _keyer("", {})
    _flatten(functional, "", {}, calls, seen)
    return Graph(tuple(calls), key(functional.inputs[0]), tuple(key(t) for t in functional.outputs))


def _keyer(scope: str, alias: dict):
    def key(tensor):
        own = (scope, id(tensor))
        return alias.get(own, own)

    return key


def _flatten(functional, scope: str, alias: dict, calls: list, seen: dict) -> None:
    """Append the calls of ``functional`` in dependency order, entering nested models."""
    key = _keyer(scope, alias)
    depths = functional._nodes_by_depth
    for depth in sorted(depths, reverse=True):
        for node in depths[depth]:
            layer = node.operation
            if layer is None or node.is_input or type(layer).__name__ == "InputLayer":
                continue
            inner = functional_of(layer) if hasattr(layer, "layers") else None
            if inner is not None:  # a nested model: its layers join this graph
                inner_scope = f"{scope}{layer.name}#{len(calls)}/"
                link = {(inner_scope, id(t)): key(o) for t, o in zip(inner.inputs, node.input_tensors)}
                link.update({(inner_scope, id(t)): key(o) for t, o in zip(inner.outputs, node.outputs)})
                _flatten(inner, inner_scope, link, calls, seen)
                continue
            label = _label(scope, layer.name)
            first = seen.setdefault(id(layer), label)
            nth = sum(c.layer is layer for c in calls) + 1
            calls.append(
                Call(
                    layer,
                    node,
                    tuple(key(t) for t in node.input_tensors),
                    tuple(key(t) for t in node.outputs),
                    label if nth == 1 else f"{label} (call {nth})",
                    None if nth == 1 else first,
                )
            )


def _label(scope: str, name: str) -> str:
    """``outer/inner`` for a layer inside nested models (the call counters left out)."""
    outer = [part.split("#")[0] for part in scope.split("/") if part]
    return "/".join(outer + [name])
