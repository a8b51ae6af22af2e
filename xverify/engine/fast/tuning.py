"""The fused path's tuning: one record, so that a test (or a benchmark) can set every knob at once."""

from __future__ import annotations

from dataclasses import dataclass

from xverify.engine.ops.depthwise import BLOCK_BUDGET


@dataclass(frozen=True)
class Tuning:
    """Where the fused depthwise steps switch layouts. None of these changes what is computed, only
    which matmul calls compute it (within float rounding, see ``depthwise_between``).

    Example::

        Interpreter(model, fuse=Tuning(wide_extra=10.0))  # rows at the computed width everywhere

    Attributes:
        phased_extra: a pointwise conv makes a strided depthwise conv's input as padded stride
            phases when these add at most this share of columns to its matmul (measured on
            MobileNetV2: a gain on 112x112 and 56x56 planes, a loss on 28x28 and smaller).
        wide_extra: a fused depthwise conv hands its output to the pointwise conv after it with
            each row at the computed width (the extra columns dropped from the pointwise conv's
            output, six times smaller in MobileNet) when that adds at most this share of columns
            (measured on MobileNetV2: a gain down to 14x14 planes, a loss on 7x7).
        depthwise_block: elements of a depthwise im2col block (as the plain kernel's).
    """

    phased_extra: float = 1.1
    wide_extra: float = 1.2
    depthwise_block: int = BLOCK_BUDGET
