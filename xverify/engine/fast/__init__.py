"""The engine's fast path: a pass over the interpreter's steps and the kernels it swaps in.

``fuse(steps, constants, pinned, tuning) -> steps`` replaces each Conv chain
``[Pad ->] Conv [-> Mul] [-> Clip | Relu]`` (and a depthwise one with the pointwise chains around
it) by one step whose kernel computes the same numbers to float rounding. The interpreter runs it
when built with ``Interpreter(model, fuse=True)`` (the default; ``fuse=Tuning(...)`` to tune it)
and no caller taps or watches a tensor the fused steps hide; the registered kernels and the plain
loop know nothing of it.

    chains.py     finding the chains (named records, ``ConvChain``), from a ``Dataflow``
    fusion.py     the pass: chains and depthwise groups to fused ``Step``s
    kernels.py    a chain's kernel: the Mul folded into the Conv, the clamp per block
    depthwise.py  a depthwise conv with its neighbours, image by image
    tuning.py     ``Tuning``: the layout thresholds, one record
"""

from xverify.engine.fast.fusion import fuse
from xverify.engine.fast.tuning import Tuning

__all__ = ["Tuning", "fuse"]
