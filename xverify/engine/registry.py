"""The engine's op registry: a plain dict from ONNX op type to a NumPy kernel.

A kernel is a small pure function ``kernel(*inputs, **attributes)`` that takes NumPy arrays (``None``
for an omitted optional input) and the node's attributes decoded to Python values (ints, floats,
str, lists, numpy arrays for tensors, ``onnx.GraphProto`` for subgraphs) and returns one array or a
tuple of arrays, one per node output. Kernels keep their input dtype.

Kernels that must know the interpreter's state (the float dtype of the float64 oracle, or a way to run
a subgraph) are registered with ``context=True`` and receive it as the keyword ``ctx``
(an ``engine.interpreter.Context``).

Kernels registered with ``inplace=True`` also accept the keyword ``out``: an array the kernel may
overwrite with its result, or ``None``. The interpreter passes the node's first input there only when
nothing else can see that array any more (the tensor dies at this node and no other tensor, feed,
initializer, tap or caller holds it), so writing into it saves an allocation and a memory pass.
A kernel uses ``out`` only when its result has exactly ``out``'s shape and dtype.

Example::

    @op("Relu")
    def relu(x):
        return np.maximum(x, 0).astype(x.dtype, copy=False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class OpSpec:
    """One registered op: its kernel and what the kernel covers, for ``xverify ops``."""

    name: str
    kernel: Callable
    context: bool = False
    attributes: tuple[str, ...] = ()
    notes: str = ""
    domain: str = ""
    inplace: bool = False


OPS: dict[str, OpSpec] = {}


def op(name: str, *, context: bool = False, attributes: tuple[str, ...] = (), notes: str = "",
       domain: str = "", inplace: bool = False):
    """Register the decorated function as the kernel of ONNX op ``name``.

    Args:
        name: the ONNX op type, e.g. ``"Conv"``.
        context: pass the interpreter ``Context`` as the keyword ``ctx``.
        attributes: the attribute names the kernel honours (listed by ``xverify ops``).
        notes: limits worth telling a user (e.g. "auto_pad=VALID|SAME_UPPER|NOTSET").
        domain: the ONNX domain; "" is the default domain.
        inplace: the kernel accepts ``out=`` (see the module docstring).
    """

    def register(kernel: Callable) -> Callable:
        if name in OPS:
            raise ValueError(f"op {name!r} registered twice")
        OPS[name] = OpSpec(name, kernel, context, tuple(attributes), notes, domain, inplace)
        return kernel

    return register


def supported_ops() -> list[OpSpec]:
    """All registered ops, sorted by name."""
    from xverify.engine import ops  # noqa: F401  (importing the package fills OPS)

    return sorted(OPS.values(), key=lambda spec: spec.name)
