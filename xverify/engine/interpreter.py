"""Run an ONNX graph with xverify's own NumPy kernels.

The interpreter walks the nodes in the graph's (topological) order, calls each node's kernel from the
registry and frees every tensor after its last use, so memory stays near the largest live set rather
than the sum of all intermediates. A kernel registered ``inplace=True`` may write its result into its first
input when that tensor dies at the node and nothing else (another tensor's view, a feed, an
initializer, a tap, a caller's callback) can see it, which saves an allocation and a memory pass.
Two dtype policies:

* ``float32`` (the mirror): every tensor keeps the dtype the ONNX graph gives it, as a runtime would.
* ``float64`` (the oracle): every floating tensor (initializers, feeds, casts, constants) is computed in
  float64, so the result is as close to exact arithmetic as the graph's formula allows.

Example::

    interp = Interpreter(onnx_model, dtype="float64")
    outs = interp.run({"x": x}, taps=["sequential/dense/Relu:0"])
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from xverify.engine.fusion import fuse_conv_chains
from xverify.engine.registry import OPS, resolve, supported_versions
from xverify.errors import InputDataError, UnsupportedOpError

_FLOAT_TYPES = (
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
)
_WIDENED = tuple(
    np.dtype(helper.tensor_dtype_to_np_dtype(t))  # what the oracle computes in float64
    for t in _FLOAT_TYPES
    if t != onnx.TensorProto.DOUBLE
)


def _keep_freed_memory() -> None:
    """Ask glibc to keep freed large blocks for reuse instead of returning them to the OS.

    By default glibc serves every block above 32 MB (a batch-8 feature map of a CNN is 40 MB) with a
    fresh ``mmap`` and unmaps it on free, so every kernel output page-faults its memory back in:
    that doubles the cost of an elementwise op. Raising the mmap and trim thresholds lets the
    interpreter's tensors reuse the memory of tensors it has freed; the price is that the process
    keeps up to that much free memory mapped after a run. A no-op outside glibc, and when the
    environment sets ``XVERIFY_MALLOC_TUNING=0`` (for a host process that tunes malloc itself).
    """
    global _MALLOC_TUNED
    if (
        _MALLOC_TUNED
        or not sys.platform.startswith("linux")
        or os.environ.get("XVERIFY_MALLOC_TUNING", "1") == "0"
    ):
        return
    _MALLOC_TUNED = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, _MALLOC_KEEP)
        libc.mallopt(m_trim_threshold, _MALLOC_KEEP)
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        pass


_MALLOC_TUNED = False
_MALLOC_KEEP = 1 << 30


def _refcount(array) -> int:
    return sys.getrefcount(array)


def _exclusive(array, holders: int) -> bool:
    """Whether ``holders`` containers (and the caller's argument) are all that reach ``array``'s memory.

    A view (Reshape, Squeeze, Identity output, a caller's copy) holds a reference to the array or
    to its base, so any other user of the memory shows up in a reference count. The counts are
    compared with ones measured the same way at import (Python versions differ in how many
    references a call borrows), and only on CPython, where reference counts are exact.
    """
    if _REFS is None or not array.flags.writeable or _refcount(array) != holders + _REFS[0]:
        return False
    base = array.base
    while base is not None:  # a view of an array only this view holds (e.g. a reshaped result)
        if not isinstance(base, np.ndarray) or _refcount(base) != _REFS[1]:
            return False
        base = base.base
    return True


def _calibrate_refs():
    """Reference counts ``_exclusive`` sees for an array held by no container, and for the base of
    a view held only by that view; ``None`` where reference counts cannot be trusted."""
    if sys.implementation.name != "cpython":
        return None
    box = [np.zeros(2)]
    alone = (lambda array: _refcount(array))(box[0]) - 1  # as _exclusive counts; the list holds it
    view = box.pop().reshape(1, 2)
    base = view.base
    only_view = _refcount(base)
    del base
    return alone, only_view


_REFS = _calibrate_refs()


def _decode_attribute(attr: onnx.AttributeProto):
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8") for v in value]
    if isinstance(value, list) and value and isinstance(value[0], onnx.TensorProto):
        return [numpy_helper.to_array(v) for v in value]
    return value


# Attributes that never change a result: opset-1 ``consumed_inputs`` only told a runtime which
# inputs it could overwrite; opset-1 RNN/GRU/LSTM ``output_sequence`` only whether Y is produced.
_IGNORED_ATTRIBUTES = ("consumed_inputs", "output_sequence")


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: _decode_attribute(a) for a in node.attribute if a.name not in _IGNORED_ATTRIBUTES}


def opsets_of(model: onnx.ModelProto) -> dict[str, int]:
    """The model's opset per domain ("" for the default domain, which "ai.onnx" also names)."""
    return {("" if o.domain in ("", "ai.onnx") else o.domain): o.version for o in model.opset_import}


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    graphs = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            graphs.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            graphs.extend(attr.graphs)
    return graphs


def _outer_names(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads from its enclosing scope (used to keep them alive long enough)."""
    local = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        used.update(n for n in node.input if n)
        for sub in _subgraphs(node):
            used |= _outer_names(sub)
        local.update(node.output)
    return used - local


def iter_nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    """Every node of a graph and of its subgraphs, depth first."""
    for node in graph.node:
        yield node
        for sub in _subgraphs(node):
            yield from iter_nodes(sub)


def kernel_for(node: onnx.NodeProto, opsets: dict[str, int] | None):
    """The registry's kernel for ``node`` at the model's opset of its domain, or None."""
    from xverify.engine import ops  # noqa: F401  (fills the registry)

    domain = _domain(node)
    return resolve(node.op_type, domain, (opsets or {}).get(domain))


def unsupported_nodes(graph: onnx.GraphProto, opsets: dict[str, int] | None = None) -> list[onnx.NodeProto]:
    """The nodes (subgraphs included) the engine has no kernel for at the model's ``opsets``
    (``None``: any opset)."""
    return [n for n in iter_nodes(graph) if kernel_for(n, opsets) is None]


def _domain(node: onnx.NodeProto) -> str:
    return "" if node.domain in ("", "ai.onnx") else node.domain


def _refusal(missing: list[onnx.NodeProto], opsets: dict[str, int]) -> UnsupportedOpError:
    """One message naming every op (and opset) the engine cannot run, and what it supports."""
    kinds = {}
    for n in missing:
        domain = _domain(n)
        name = f"{domain}.{n.op_type}" if domain else n.op_type
        versions = supported_versions(n.op_type, domain)
        kinds[name] = (
            f"{name} at opset {opsets.get(domain, '?')} (the engine runs it at opsets {versions})"
            if versions
            else name
        )
    error = UnsupportedOpError(
        f"the NumPy engine has no kernel for op(s) {', '.join(sorted(kinds.values()))} "
        f"(first at node {missing[0].name!r}); `xverify ops` lists the supported ops and opsets. "
        "Run the check without the numpy runtime (--runtimes onnxruntime,tensorflow) "
        "or report the op."
    )
    error.ops = sorted(kinds)
    return error


def _value(value, cast):
    """A kernel's or caller's value in the interpreter's form: an array, a list of arrays (an ONNX
    sequence) or None (an empty optional)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [cast(np.asarray(v)) for v in value]
    return cast(np.asarray(value))


@dataclass
class Context:
    """What a ``context=True`` kernel can see: the dtype policy, its node and the enclosing scope."""

    float_dtype: np.dtype
    node: onnx.NodeProto
    scope: dict
    oracle: bool
    programs: dict | None = None  # compiled subgraphs, shared with the enclosing program
    opsets: dict | None = None  # the model's opset per domain

    def np_dtype(self, elem_type: int) -> np.dtype:
        """The NumPy dtype for an ONNX element type under this run's dtype policy."""
        if self.oracle and elem_type in _FLOAT_TYPES:
            return np.dtype(np.float64)
        return helper.tensor_dtype_to_np_dtype(elem_type)

    def run_subgraph(self, graph: onnx.GraphProto, feeds: dict) -> list[np.ndarray]:
        """Run a subgraph (Loop/If/Scan body) with this scope visible; return its outputs in order."""
        # Compile each subgraph once per enclosing program, not once per call: a Loop or Scan runs
        # its body every iteration. Keyed by id(); the graph itself is kept so the id stays unique.
        cache = self.programs if self.programs is not None else {}
        entry = cache.get(id(graph))
        if entry is None or entry[0] is not graph:
            entry = cache[id(graph)] = (graph, _Program(graph, self.float_dtype, self.opsets))
        values = entry[1].run(feeds, scope=self.scope)
        return [values[o.name] for o in graph.output]


_FUSED_OPS = ("Conv", "Pad", "Mul", "Add", "Clip", "Relu")


class _Program:
    """A graph compiled to a list of steps, with the last use of every tensor precomputed."""

    def __init__(self, graph: onnx.GraphProto, float_dtype: np.dtype, opsets: dict[str, int]):
        self.graph = graph
        self.float_dtype = np.dtype(float_dtype)
        self.oracle = self.float_dtype == np.float64
        self.opsets = opsets
        missing = unsupported_nodes(graph, opsets)
        if missing:
            raise _refusal(missing, opsets)
        self.constants = {init.name: self._cast(numpy_helper.to_array(init)) for init in graph.initializer}
        # The kernel of each node is chosen here, once, for the model's opset.
        steps = [
            (node, kernel_for(node, opsets), list(node.input), list(node.output), _attributes(node))
            for node in graph.node
        ]
        self.keep = {o.name for o in graph.output}
        self.subprograms: dict = {}
        self.plain = self._schedule(steps)
        # Conv chains run as one step when no caller needs to see their intermediate tensors.
        # Fusion reuses the newest kernels, so a graph with an older form of a fused op stays as is.
        pinned = self.keep | {
            name for node in graph.node for sub in _subgraphs(node) for name in _outer_names(sub)
        }
        newest = all(spec is OPS.get(node.op_type) for node, spec, *_ in steps if node.op_type in _FUSED_OPS)
        fused, self.hidden = fuse_conv_chains(steps, self.constants, pinned) if newest else (steps, set())
        self.fused = self._schedule(fused) if self.hidden else self.plain

    def _schedule(self, steps: list) -> tuple:
        """``steps`` with, per step, the tensors last read there and whether its kernel may write
        into its first input (that input dies there, is read once and is nobody else's)."""
        last_use: dict[str, int] = {}
        for index, (node, _, inputs, _, _) in enumerate(steps):
            reads = set(inputs)
            for sub in _subgraphs(node):
                reads |= _outer_names(sub)
            for name in reads:
                if name:
                    last_use[name] = index
        free_after: list[list[str]] = [[] for _ in steps]
        for name, index in last_use.items():
            free_after[index].append(name)
        inplace = [
            bool(
                spec.inplace
                and inputs
                and inputs[0]
                and last_use.get(inputs[0]) == index
                and inputs.count(inputs[0]) == 1
                and inputs[0] not in self.constants
                and inputs[0] not in self.keep
            )
            for index, (_, spec, inputs, _, _) in enumerate(steps)
        ]
        return steps, free_after, inplace

    def _cast(self, array: np.ndarray) -> np.ndarray:
        # The float8 types are storage formats a graph casts to on purpose: they stay as they are.
        if self.oracle and array.dtype in _WIDENED:
            return array.astype(np.float64)
        return array

    def run(
        self,
        feeds: dict,
        keep: set[str] | None = None,
        on_tensor: Callable[[str, np.ndarray], None] | None = None,
        scope: dict | None = None,
    ) -> dict:
        # ``scope``: the enclosing graph's tensors (already cast), visible to a subgraph; its own
        # initializers and feeds shadow them. Freeing below only drops names from this local dict.
        values = {**scope, **self.constants} if scope else dict(self.constants)
        values.update({k: _value(v, self._cast) for k, v in feeds.items()})
        keep = self.keep | (keep or set())
        plain = on_tensor is not None or not self.hidden.isdisjoint(keep)
        steps, free_after, inplace = self.plain if plain else self.fused
        for index, (node, spec, inputs, outputs, attrs) in enumerate(steps):
            args = [values[name] if name else None for name in inputs]
            kwargs = dict(attrs)
            if inplace[index] and inputs[0] not in keep and inputs[0] not in feeds:
                # Held by ``values`` and ``args`` only: nobody else can see the overwrite.
                kwargs["out"] = (
                    args[0] if isinstance(args[0], np.ndarray) and _exclusive(args[0], 2) else None
                )
            if spec.context:
                kwargs["ctx"] = Context(
                    self.float_dtype, node, values, self.oracle, self.subprograms, self.opsets
                )
            try:
                result = spec.kernel(*args, **kwargs)
            except KeyError:
                raise
            except Exception as exc:  # add where it happened; the kernel's own error stays
                exc.add_note(f"in node {node.name!r} ({node.op_type}) of the NumPy engine")
                raise
            if not isinstance(result, tuple):
                result = (result,)
            for name, value in zip(outputs, result):
                if name:
                    value = _value(value, self._cast)
                    values[name] = value
                    if on_tensor is not None:
                        on_tensor(name, value)
            result = value = None  # drop references that would hide a tensor's last use
            for name in free_after[index]:
                if name not in keep and name not in feeds and name not in self.constants:
                    values.pop(name, None)
        return values


class Interpreter:
    """Runs an ONNX model with the engine's kernels.

    Args:
        model: an ``onnx.ModelProto``.
        dtype: ``"float32"`` to mirror the graph's dtypes, ``"float64"`` for the exact-arithmetic oracle.
    """

    def __init__(self, model: onnx.ModelProto, dtype: str = "float32"):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', not {dtype!r}")
        self.model = model
        self.dtype = dtype
        _keep_freed_memory()
        self.opsets = opsets_of(model)
        self.program = _Program(model.graph, np.dtype(dtype), self.opsets)
        init_names = {i.name for i in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in init_names]
        self.output_names = [o.name for o in model.graph.output]

    def tensor_names(self) -> list[str]:
        """Every tensor the graph computes, in the order it is computed."""
        return [name for node in self.model.graph.node for name in node.output if name]

    def run(
        self,
        feeds: dict,
        taps: Iterable[str] | str | None = None,
        on_tensor: Callable[[str, np.ndarray], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run the graph.

        Args:
            feeds: one array per graph input, by name.
            taps: intermediate tensor names to return as well, or ``"all"``.
            on_tensor: called with ``(name, value)`` for every tensor as it is computed, so a caller
                can compare intermediates one at a time without keeping them.

        Returns:
            The graph outputs and the tapped tensors, by name.
        """
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise InputDataError(f"missing input(s) {missing}; the model expects {self.input_names}")
        tap_set = set(self.tensor_names()) if taps == "all" else set(taps or ())
        values = self.program.run(feeds, keep=tap_set, on_tensor=on_tensor)
        wanted = list(self.output_names) + [t for t in tap_set if t not in self.output_names]
        return {name: values[name] for name in wanted if name in values}
