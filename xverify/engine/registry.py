"""The engine's op registry: ONNX op type and opset range to a NumPy kernel.

A kernel is a small pure function ``kernel(*inputs, **attributes)`` that takes NumPy arrays (``None``
for an omitted optional input, a list of arrays for a sequence) and the node's attributes decoded to
Python values (ints, floats, str, lists, numpy arrays for tensors, ``onnx.GraphProto`` for
subgraphs) and returns one array or a tuple of arrays, one per node output. Kernels keep their
input dtype.

Versions. ONNX changes an op's meaning between opsets (Softmax normalizes over the flattened
trailing axes before opset 13 and along one axis from 13; Add takes a ``broadcast`` attribute before
7). A kernel declares the opsets whose semantics it implements, ``since`` to ``until`` (inclusive,
``None``: up to the newest), and the interpreter picks, once when it loads a graph, the kernel whose
range holds the model's opset for the op's domain. A model whose opset no kernel covers is refused
up front, naming the op, its opset and the opsets supported. Where one kernel serves several ONNX
versions of an op (a version that only added types, or an attribute the kernel reads either way),
its range says so explicitly.

Kernels that must know the interpreter's state (the float dtype of the float64 oracle, or a way to run
a subgraph) are registered with ``context=True`` and receive it as the keyword ``ctx``
(an ``engine.interpreter.Context``).

Kernels registered with ``inplace=True`` also accept the keyword ``out``: an array the kernel may
overwrite with its result, or ``None``. The interpreter passes the node's first input there only when
nothing else can see that array any more (the tensor dies at this node and no other tensor, feed,
initializer, tap or caller holds it), so writing into it saves an allocation and a memory pass.
A kernel uses ``out`` only when its result has exactly ``out``'s shape and dtype.

Example::

    @op("Softmax", since=13)
    def softmax(x, axis=-1): ...

    @op("Softmax", since=1, until=12)
    def softmax_flattened(x, axis=1): ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class OpSpec:
    """One registered kernel: the op, the opsets it covers and what it honours, for ``xverify ops``."""

    name: str
    kernel: Callable
    context: bool = False
    attributes: tuple[str, ...] = ()
    notes: str = ""
    domain: str = ""
    inplace: bool = False
    since: int = 1
    until: int | None = None

    def covers(self, opset: int) -> bool:
        return self.since <= opset and (self.until is None or opset <= self.until)

    @property
    def versions(self) -> str:
        """The opset range as ``xverify ops`` and refusals print it: ``7+``, ``1-12``."""
        if self.until is None:
            return f"{self.since}+"
        return str(self.since) if self.since == self.until else f"{self.since}-{self.until}"


OPS: dict[str, OpSpec] = {}  # the kernel for the newest opset of each op (what fusion reuses)
VERSIONS: dict[tuple[str, str], list[OpSpec]] = {}  # (domain, op) -> kernels, oldest first


def op(
    name: str,
    *,
    context: bool = False,
    attributes: tuple[str, ...] = (),
    notes: str = "",
    domain: str = "",
    inplace: bool = False,
    since: int = 1,
    until: int | None = None,
):
    """Register the decorated function as the kernel of ONNX op ``name`` for opsets since..until.

    Args:
        name: the ONNX op type, e.g. ``"Conv"``.
        context: pass the interpreter ``Context`` as the keyword ``ctx``.
        attributes: the attribute names the kernel honours (listed by ``xverify ops``).
        notes: limits worth telling a user (e.g. "auto_pad=VALID|SAME_UPPER|NOTSET").
        domain: the ONNX domain; "" is the default domain.
        inplace: the kernel accepts ``out=`` (see the module docstring).
        since, until: the opsets of ``domain`` (inclusive; ``until=None``: the newest) whose
            semantics of the op the kernel implements.
    """

    def register(kernel: Callable) -> Callable:
        spec = OpSpec(name, kernel, context, tuple(attributes), notes, domain, inplace, since, until)
        specs = VERSIONS.setdefault((domain, name), [])
        for other in specs:
            if other.covers(since) or spec.covers(other.since):
                raise ValueError(f"op {name!r} registered twice for opset {max(since, other.since)}")
        specs.append(spec)
        specs.sort(key=lambda s: s.since)
        if until is None:
            OPS[name] = spec
        return kernel

    return register


def resolve(name: str, domain: str, opset: int | None) -> OpSpec | None:
    """The kernel of op ``name`` for a model importing ``domain`` at ``opset``; None if none covers it.

    ``opset=None`` (a model that does not import the domain) takes the newest kernel.
    """
    specs = VERSIONS.get((domain, name), [])
    if opset is None:
        return specs[-1] if specs else None
    return next((s for s in specs if s.covers(opset)), None)


def supported_versions(name: str, domain: str = "") -> str:
    """The opsets op ``name`` runs at, e.g. ``"1-12, 13+"``; ``""`` when the engine lacks it."""
    return ", ".join(s.versions for s in VERSIONS.get((domain, name), []))


def supported_ops() -> list[OpSpec]:
    """All registered kernels, sorted by op name and then opset."""
    from xverify.engine import ops  # noqa: F401  (importing the package fills the registry)

    return [s for key in sorted(VERSIONS, key=lambda k: (k[1], k[0])) for s in VERSIONS[key]]
