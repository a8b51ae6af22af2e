"""xverify's NumPy forward pass: an ONNX graph interpreter with its own kernels."""

from xverify.engine.interpreter import Interpreter, unsupported_nodes
from xverify.engine.registry import OPS, op, supported_ops

__all__ = ["OPS", "Interpreter", "op", "supported_ops", "unsupported_nodes"]
