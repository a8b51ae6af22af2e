"""A depthwise Conv with the Convs around it, image by image, without the tensors between them.

MobileNet's expand conv writes a tensor six times wider than its input, which the depthwise conv
reads right back, and the projection reads the depthwise output: round trips through memory for
the largest tensors of the model. Here a worker makes one image of the expanded tensor (the same
``matmul_post`` call as the plain Conv makes, so the numbers are the same bit for bit) just before
its depthwise blocks read it from cache, and projects the image as soon as its last block is done.
Where a strided depthwise conv reads a large plane, the expand conv makes the image as its stride
phases instead (``phased_producer``), and on planes down to 14x14 the projection takes rows at the
width the depthwise conv computes (``Tuning.wide_extra``): those matmuls run over other columns
than the nodes' own, and OpenBLAS can then round a result differently in its last bit.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from xverify.engine.fast.kernels import FoldedConv, run_folded
from xverify.engine.fast.tuning import Tuning
from xverify.engine.ops._parallel import WORKERS, run_chunks
from xverify.engine.ops._windows import phase_windows, placed, windows
from xverify.engine.ops.conv import COLS_BUDGET, geometry_of, is_pointwise, matmul_post, pad_spatial
from xverify.engine.ops.depthwise import BlockProduct, Columns, DepthwisePlan, columns_for


def depthwise_between(x, dw: FoldedConv, before=None, after=None, residual=None, tuning=None):
    """The depthwise Conv ``dw`` with ``before`` (optional, a group-1 Conv making its input from
    ``x``) and ``after`` (optional, a pointwise Conv reading its output).

    ``residual`` (optional, of the result's dtype) is added to the result, image by image where it
    has the result's shape (MobileNetV2's skip connections), else as NumPy broadcasts it. Falls
    back to the convs one after the other for fewer images than workers (one image per worker
    would leave the others idle) and for non-float or mixed dtypes.
    """
    tuning = tuning or Tuning()
    c = dw.weight.shape[0] if before is None else before.weight.shape[0]
    mid = x.shape[2:] if before is None else tuple(geometry_of(x, before.weight, 1, before.attrs)[4])
    if not _fits(x, dw, before, after, c, mid):
        return _one_by_one(x, dw, before, after, residual)
    n = x.shape[0]
    # The depthwise conv's input: x, or only its shape and dtype when made image by image.
    carrier = x if before is None else np.broadcast_to(np.zeros((), x.dtype), (n, c) + mid)
    strides, dilations, begin, end, out_shape = geometry_of(carrier, dw.weight, c, dw.attrs)
    plan = DepthwisePlan(
        carrier.shape, dw.weight, begin, end, strides, dilations, out_shape, tuning.depthwise_block
    )
    phased = before is not None and _phased(before, plan, mid, tuning)
    if before is None:
        image = x.__getitem__
    elif phased:
        image = phased_producer(x, *_matrix(before, c), begin, end, strides, plan.plane)
    else:
        image = ImageProducer(x, before, c, mid)
    projection = None if after is None else Projection(after, plan, x.dtype, residual)
    out = depthwise_images(plan, dw, x.dtype, image, phased, projection, tuning)
    if projection is None:
        return _plus(out, residual)
    return projection.result() if projection.skip else _plus(projection.result(), residual)


def _fits(x, dw, before, after, c, mid) -> bool:
    """Whether the convs can run image by image (else they run one after the other)."""
    parts = [part for part in (before, dw, after) if part is not None]
    # (a larger im2col would be split into bands by the Conv kernel: other matmul calls)
    too_wide = (
        before is not None
        and math.prod(before.weight.shape[1:]) * math.prod(mid) > COLS_BUDGET
        and not is_pointwise(before.weight, before.attrs)
    )
    return not (
        x.shape[0] < WORKERS
        or x.dtype.kind != "f"
        or len({x.dtype} | {part.weight.dtype for part in parts}) > 1
        or dw.weight.shape[1] != 1
        or dw.attrs.get("group", 1) != c
        or too_wide
    )


def _one_by_one(x, dw, before, after, residual):
    if before is not None:
        x = run_folded(x, before)
    y = run_folded(x, dw)
    y = y if after is None else run_folded(y, after)
    return _plus(y, residual)


def _phased(before: FoldedConv, plan: DepthwisePlan, mid: tuple, tuning: Tuning) -> bool:
    """Whether ``before`` should write the depthwise input as its padded stride phases: a strided
    depthwise conv would read strided windows of a plain image (slow gathers), but the padded
    phases add columns to the matmul, too many on small planes."""
    return (
        is_pointwise(before.weight, before.attrs)
        and len(mid) == 2
        and any(s > 1 for s in plan.strides)
        and math.prod(plan.strides) * math.prod(plan.plane) <= tuning.phased_extra * math.prod(mid)
    )


def _matrix(conv: FoldedConv, c: int) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """``conv``'s weight as a ``(C, C_in * k)`` matrix and its bias as a column (or None), and
    its ``post``: the operands of ``matmul_post``."""
    k = math.prod(conv.weight.shape[1:])
    return conv.weight.reshape(c, k), None if conv.bias is None else conv.bias.reshape(c, 1), conv.post


def _plus(y, residual):
    """``y + residual`` (``y`` when there is none), in place where the shapes agree; ``y`` is a
    fresh result nobody else holds."""
    if residual is None:
        return y
    return np.add(y, residual, out=y if residual.shape == y.shape else None)


class ImageProducer:
    """``image(i)``: image ``i`` of ``before``'s output, ``(C, *mid)``, made on this thread by the
    plain Conv's own im2col and ``matmul_post`` call, and kept while the thread reads it."""

    def __init__(self, x, before: FoldedConv, c: int, mid: tuple):
        self.w, self.bias, self.post = _matrix(before, c)
        k = self.w.shape[1]
        if is_pointwise(before.weight, before.attrs):
            src = x.reshape(x.shape[0], k, -1)  # the column matrices, as the plain Conv's
            self.columns = src.__getitem__
        else:
            strides, dilations, begin, end, _ = geometry_of(x, before.weight, 1, before.attrs)
            win = windows(pad_spatial(x, begin, end), before.weight.shape[2:], strides, dilations, mid)
            self.columns = lambda i: win[i].reshape(k, -1)  # the plain Conv's im2col
        self.shape, self.dtype = (c,) + mid, x.dtype
        self.local = threading.local()

    def __call__(self, i):
        local = self.local
        if getattr(local, "index", None) != i:
            if getattr(local, "buffer", None) is None:
                local.buffer = np.empty((self.shape[0], math.prod(self.shape[1:])), dtype=self.dtype)
            matmul_post(self.w, self.columns(i), local.buffer, self.bias, self.post)
            local.index = i
        return local.buffer.reshape(self.shape)


class Projection:
    """``finish(i, d, width)``: the pointwise Conv ``after`` of one depthwise output image ``d``
    ``(C * mult, pixels)`` (``width`` None), or with each row at ``width`` (the extra columns
    dropped), into the result; ``residual`` added image by image where it has the result's shape
    (``skip``)."""

    def __init__(self, after: FoldedConv, plan: DepthwisePlan, dtype, residual):
        self.w = after.weight.reshape(after.weight.shape[0], -1)
        self.bias = None if after.bias is None else after.bias.reshape(-1, 1)
        self.post, self.dtype, self.out_shape = after.post, dtype, plan.out_shape
        m = self.w.shape[0]
        self.y = np.empty((plan.n, m, plan.pixels), dtype=dtype)
        self.skip = residual is not None and residual.shape == (plan.n, m) + plan.out_shape
        self.residual = residual
        self.local = threading.local()

    def __call__(self, i, d, width):
        y, residual = self.y, self.residual
        if width is None:
            matmul_post(self.w, d, y[i], self.bias, self.post)
            if self.skip:  # while the image is in cache
                np.add(y[i], residual[i].reshape(y.shape[1:]), out=y[i])
            return
        if getattr(self.local, "buffer", None) is None:
            self.local.buffer = np.empty((self.w.shape[0], d.shape[1]), dtype=self.dtype)
        buffer = self.local.buffer
        matmul_post(self.w, d, buffer, self.bias, self.post)
        rows = buffer.reshape(self.w.shape[0], self.out_shape[0], width)[..., : self.out_shape[1]]
        image = y[i].reshape(rows.shape)
        if self.skip:
            np.add(rows, residual[i], out=image)
        else:
            np.copyto(image, rows)

    def result(self):
        return self.y.reshape(self.y.shape[:2] + self.out_shape)


class PlanesColumns(Columns):
    """The windows straight from the padded stride phases a producer made (``phased_producer``;
    the same array object for every image on one thread)."""

    def __init__(self, plan: DepthwisePlan, dtype):
        super().__init__(plan, dtype)
        self.planes = None
        self.copies: list[np.ndarray] = []

    def fill(self, image, i, c0, c1) -> int:
        k, made = c1 - c0, image(i)
        if made is not self.planes:  # the first image on this thread
            self.planes = made
            self.copies = phase_windows(made, self.view, self.plan.phases, self.plan.width, self.plan.run)
        for dst, window in self.copies:
            np.copyto(dst[:k], window[c0:c1])
        return k


def depthwise_images(plan: DepthwisePlan, dw: FoldedConv, dtype, image, phased, finish, tuning):
    """The depthwise Conv ``dw`` of the images ``image(i)`` (with ``phased``, their padded stride
    phases), each worker given whole images so that it makes each image once and reads it back from
    its cache. Returns the output, or, with ``finish``, hands it over image by image as soon as an
    image is done (``finish(i, out, width)``, see ``Projection``) and returns None."""
    wt, bias = plan.weights(dw.weight, dw.bias)
    at_width = finish is not None and plan.flat and plan.width <= tuning.wide_extra * plan.out_shape[-1]
    y = None if finish else np.empty((plan.n, plan.c, plan.mult, plan.pixels), dtype=dtype)
    blocks = plan.blocks()

    def work(start, stop):
        columns = PlanesColumns(plan, dtype) if phased else columns_for(plan, dtype)
        product = BlockProduct(plan, wt, bias, dw.post, dtype, at_width)
        held = None if finish is None else _held(plan, dtype, at_width)
        for i, c0, c1 in blocks[start:stop]:
            k = columns.fill(image, i, c0, c1)
            product(columns.cols, k, c0, c1, (y[i] if held is None else held)[c0:c1])
            if held is not None and c1 == plan.c:
                finish(i, held.reshape(plan.c * plan.mult, -1), plan.width if at_width else None)

    chunk = -(-plan.c // plan.per_block) * -(-plan.n // WORKERS)
    run_chunks(work, len(blocks), chunk, blas=True)
    return None if y is None else y.reshape((plan.n, plan.c * plan.mult) + plan.out_shape)


def _held(plan: DepthwisePlan, dtype, at_width: bool):
    """One output image for ``finish``; at the computed width, where it has few extra columns."""
    pixels = plan.out_shape[0] * plan.width if at_width else plan.pixels
    return np.zeros((plan.c, plan.mult, pixels), dtype=dtype)


def phased_producer(x, w1m, bias1, post1, begin, end, strides, plane):
    """``image(i)`` making a pointwise conv's output image ``i`` as the padded stride phases of the
    depthwise conv's input, ``(C, s_h, s_w, *plane)``.

    The pointwise conv's input pixels are gathered into that layout first (with zeros where the
    padding goes), so its matmul writes each output pixel straight to where the depthwise conv
    reads it: the input has a sixth of the channels in MobileNet, and the depthwise windows are
    then contiguous runs instead of strided gathers. The padding positions come out of the matmul
    as the bias (after ``post1``) and are zeroed. Each output column is the matmul of the same
    input column as in the plain Conv.
    """
    k1, c = w1m.shape[1], w1m.shape[0]
    where = placed(begin, x.shape[2:], strides)
    # The padding in each phase plane: the rows and columns around the input's. (Past the padded
    # plane, a phase plane is only read for output columns that are dropped.)
    border = []
    for phase, _, inside in where:
        ends = [
            len(range(p, m + b0 + e0, s)) for p, m, b0, e0, s in zip(phase, x.shape[2:], begin, end, strides)
        ]
        for axis, (span, stop) in enumerate(zip(inside, ends)):
            lead = (slice(None),) + phase + (slice(None),) * axis
            border += [
                lead + (edge,)
                for edge in (slice(0, span.start), slice(span.stop, stop))
                if edge.stop > edge.start
            ]

    local = threading.local()

    def image(i):
        if getattr(local, "index", None) == i:
            return local.planes
        if getattr(local, "gathered", None) is None:
            local.gathered = np.zeros((k1,) + tuple(strides) + plane, dtype=x.dtype)
            local.planes = np.empty((c,) + tuple(strides) + plane, dtype=x.dtype)
        for phase, src, dst in where:
            local.gathered[(slice(None),) + phase + dst] = x[i][(slice(None),) + src]
        matmul_post(w1m, local.gathered.reshape(k1, -1), local.planes.reshape(c, -1), bias1, post1)
        for edge in border:
            local.planes[edge] = 0
        local.index = i
        return local.planes

    return image
