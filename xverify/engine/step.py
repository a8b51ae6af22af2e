"""One step of a compiled graph: what the interpreter runs, and what a pass (``fast.fuse``) rewrites."""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from xverify.engine.registry import OpSpec


@dataclass(frozen=True)
class Step:
    """A node with its kernel chosen: ``spec.kernel(*inputs, **attrs)`` makes ``outputs``.

    ``inputs`` and ``outputs`` are tensor names ("" for an omitted optional one); ``node`` is the
    ONNX node the step runs (a fused step's is its Conv's), named in the errors a kernel raises.
    """

    node: onnx.NodeProto
    spec: OpSpec
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict
