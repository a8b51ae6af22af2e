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

The loop runs ``Step``s. The fast path (``xverify.engine.fast``) is a pass that rewrites them before
the loop sees them (Conv chains as single steps); ``Interpreter(model, fuse=False)`` skips it, and a
run whose caller taps or watches a tensor the fused steps hide takes the plain steps. Memory
policy (malloc tuning, whether an array is nobody else's) lives in ``memory.py``.

Example::

    interp = Interpreter(onnx_model, dtype="float64")
    outs = interp.run({"x": x}, taps=["sequential/dense/Relu:0"])
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper, numpy_helper

from xverify.engine.memory import exclusive, keep_freed_memory
from xverify.engine.registry import resolve, supported_versions
from xverify.engine.step import Step
from xverify.errors import InputDataError, UnsupportedOpError

if TYPE_CHECKING:
    from xverify.engine.fast import Tuning

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
    return UnsupportedOpError(
        f"the NumPy engine has no kernel for op(s) {', '.join(sorted(kinds.values()))} "
        f"(first at node {missing[0].name!r}); `xverify ops` lists the supported ops and opsets. "
        "Run the check without the numpy runtime (--runtimes onnxruntime,tensorflow) "
        "or report the op.",
        ops=sorted(kinds),
    )


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
    fuse: Tuning | None = None  # the enclosing program's fast path (None: plain)

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
            entry = cache[id(graph)] = (
                graph,
                _Program(graph, self.float_dtype, self.opsets or {}, self.fuse),
            )
        values = entry[1].run(feeds, scope=self.scope)
        return [values[o.name] for o in graph.output]


@dataclass(frozen=True)
class _Scheduled:
    """A step, the tensors last read there (freed after it), and whether its kernel may write into
    its first input (that input dies there, is read once and is nobody else's)."""

    step: Step
    frees: tuple[str, ...]
    inplace: bool


class _Program:
    """A graph compiled to a list of steps, with the last use of every tensor precomputed.

    ``fuse``: the fast path's tuning, or None to run the nodes one by one. The fused schedule runs
    when no caller needs to see a tensor it hides (``hidden``).
    """

    def __init__(self, graph: onnx.GraphProto, float_dtype: np.dtype, opsets: dict[str, int], fuse=None):
        self.graph = graph
        self.float_dtype = np.dtype(float_dtype)
        self.oracle = self.float_dtype == np.float64
        self.opsets = opsets
        self.tuning = fuse
        missing = unsupported_nodes(graph, opsets)
        if missing:
            raise _refusal(missing, opsets)
        self.constants = {init.name: self._cast(numpy_helper.to_array(init)) for init in graph.initializer}
        # The kernel of each node is chosen here, once, for the model's opset.
        steps = [
            Step(node, kernel_for(node, opsets), tuple(node.input), tuple(node.output), _attributes(node))
            for node in graph.node
        ]
        self.keep = {o.name for o in graph.output}
        self.subprograms: dict = {}
        self.plain = self._schedule(steps)
        self.fast, self.hidden = self.plain, frozenset[str]()
        if fuse is not None:
            self._fuse(steps, fuse)

    def _fuse(self, steps: list[Step], tuning: Tuning) -> None:
        from xverify.engine.fast import fuse

        pinned = self.keep | {
            name for node in self.graph.node for sub in _subgraphs(node) for name in _outer_names(sub)
        }
        fused = fuse(steps, self.constants, pinned, tuning)
        made = {name for step in fused for name in step.outputs}
        self.hidden = frozenset(name for step in steps for name in step.outputs if name and name not in made)
        if self.hidden:
            self.fast = self._schedule(fused)

    def _schedule(self, steps: list[Step]) -> tuple[_Scheduled, ...]:
        last_use: dict[str, int] = {}
        for index, step in enumerate(steps):
            reads = set(step.inputs)
            for sub in _subgraphs(step.node):
                reads |= _outer_names(sub)
            for name in reads:
                if name:
                    last_use[name] = index
        frees: list[list[str]] = [[] for _ in steps]
        for name, index in last_use.items():
            frees[index].append(name)
        return tuple(
            _Scheduled(step, tuple(frees[index]), self._may_overwrite(step, index, last_use))
            for index, step in enumerate(steps)
        )

    def _may_overwrite(self, step: Step, index: int, last_use: dict[str, int]) -> bool:
        first = step.inputs[0] if step.inputs else ""
        return bool(
            step.spec.inplace
            and first
            and last_use.get(first) == index
            and step.inputs.count(first) == 1
            and first not in self.constants
            and first not in self.keep
        )

    def _cast(self, array: np.ndarray) -> np.ndarray:
        # The float8 types are storage formats a graph casts to on purpose: they stay as they are.
        if self.oracle and array.dtype in _WIDENED:
            return array.astype(np.float64)
        return array

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        keep: set[str] | None = None,
        on_tensor: Callable[[str, np.ndarray], object] | None = None,
        scope: dict | None = None,
    ) -> dict:
        # ``scope``: the enclosing graph's tensors (already cast), visible to a subgraph; its own
        # initializers and feeds shadow them. Freeing below only drops names from this local dict.
        values = {**scope, **self.constants} if scope else dict(self.constants)
        values.update({k: _value(v, self._cast) for k, v in feeds.items()})
        keep = self.keep | (keep or set())
        seen = on_tensor is not None or not self.hidden.isdisjoint(keep)  # callers see every tensor
        for item in self.plain if seen else self.fast:
            step = item.step
            args = [values[name] if name else None for name in step.inputs]
            kwargs = dict(step.attrs)
            if item.inplace and step.inputs[0] not in keep and step.inputs[0] not in feeds:
                # Held by ``values`` and ``args`` only: nobody else can see the overwrite.
                kwargs["out"] = args[0] if isinstance(args[0], np.ndarray) and exclusive(args[0], 2) else None
            if step.spec.context:
                kwargs["ctx"] = Context(
                    self.float_dtype,
                    step.node,
                    values,
                    self.oracle,
                    self.subprograms,
                    self.opsets,
                    self.tuning,
                )
            try:
                result = step.spec.kernel(*args, **kwargs)
            except KeyError:
                raise
            except Exception as exc:  # add where it happened; the kernel's own error stays
                where = f"in node {step.node.name!r} ({step.node.op_type}) of the NumPy engine"
                if sys.version_info >= (3, 11):
                    exc.add_note(where)
                else:  # Python 3.10 has no add_note(); tracebacks and check.py read the same list
                    exc.__notes__ = [*getattr(exc, "__notes__", ()), where]  # type: ignore[attr-defined]
                raise
            if not isinstance(result, tuple):
                result = (result,)
            for name, value in zip(step.outputs, result):
                if name:
                    value = _value(value, self._cast)
                    values[name] = value
                    if on_tensor is not None:
                        on_tensor(name, value)
            result = value = None  # drop references that would hide a tensor's last use
            for name in item.frees:
                if name not in keep and name not in feeds and name not in self.constants:
                    values.pop(name, None)
        return values


class Interpreter:
    """Runs an ONNX model with the engine's kernels.

    Args:
        model: an ``onnx.ModelProto``.
        dtype: ``"float32"`` to mirror the graph's dtypes, ``"float64"`` for the exact-arithmetic oracle.
        fuse: run Conv chains as fused steps (``xverify.engine.fast``) when no caller taps or
            watches a tensor they hide: ``True`` (default tuning), a ``fast.Tuning``, or ``False``
            to run every node with its own kernel. Fused results equal the plain ones to float
            rounding.

    Example::

        plain = Interpreter(onnx_model, fuse=False).run({"x": x})
    """

    def __init__(self, model: onnx.ModelProto, dtype: str = "float32", fuse: bool | Tuning = True):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', not {dtype!r}")
        self.model = model
        self.dtype = dtype
        keep_freed_memory()
        self.opsets = opsets_of(model)
        self.program = _Program(model.graph, np.dtype(dtype), self.opsets, _tuning(fuse))
        init_names = {i.name for i in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in init_names]
        self.output_names = [o.name for o in model.graph.output]

    @property
    def steps(self) -> list[Step]:
        """The steps a run with no taps takes (fused ones among them when fusing)."""
        return [item.step for item in self.program.fast]

    @property
    def hidden(self) -> frozenset[str]:
        """The tensors only the plain path makes: tapping one runs the nodes one by one."""
        return self.program.hidden

    def tensor_names(self) -> list[str]:
        """Every tensor the graph computes, in the order it is computed."""
        return [name for node in self.model.graph.node for name in node.output if name]

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        taps: Iterable[str] | str | None = None,
        on_tensor: Callable[[str, np.ndarray], object] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run the graph.

        Args:
            feeds: one array per graph input, by name.
            taps: intermediate tensor names to return as well, or ``"all"``.
            on_tensor: called with ``(name, value)`` for every tensor as it is computed, so a caller
                can compare intermediates one at a time without keeping them (the nodes then run
                one by one).

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


def _tuning(fuse: bool | Tuning) -> Tuning | None:
    """The fast path's tuning for ``Interpreter(fuse=...)``; None for the plain path."""
    if fuse is False:
        return None
    from xverify.engine.fast import Tuning

    return Tuning() if fuse is True else fuse
