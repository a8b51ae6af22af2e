"""Depthwise Conv (one input channel per group): im2col per block of channels, then a batched matmul.

``w`` is ``(C * mult, 1, *kernel)``; output channel ``o`` reads input channel ``o // mult``.
A multiply-accumulate over the taps would take two full memory passes per tap (NumPy has no
fused multiply-add); instead each block of channels copies its windows once into a
``(channels, taps, pixels)`` buffer small enough to stay in cache, and one matmul
``(channels, mult, taps) @ (channels, taps, pixels)`` writes the block's output.
The padding is applied per block too, in a cached scratch plane whose border stays zero, instead
of in a padded copy of the whole input (a full memory pass). A 2-D conv computes each output row
at the width of its input's stride-phase planes (``_windows.phases``), so that every tap's window
is one contiguous run of a flattened phase plane (long copies, not one per output row; 1.5-2x
faster on 28x28 and smaller planes), and drops the extra columns afterwards. Blocks run on a
thread pool (each matmul is too small for BLAS to thread it).

The pieces (``DepthwisePlan``, the column makers, ``BlockProduct``) are shared with the fused
steps (``xverify/engine/fast/depthwise.py``), which feed them images made on demand and take the
output image by image.
"""

from __future__ import annotations

import math

import numpy as np

from xverify.engine.ops._parallel import WORKERS, run_chunks
from xverify.engine.ops._windows import phase_plane, phase_windows, phases, placed, windows

# Depthwise im2col block (elements, 4 MB in float32): larger blocks mean fewer Python-level calls,
# which hold the GIL and so serialize the pool; measured best on MobileNetV2 (1<<18..1<<21).
BLOCK_BUDGET = 1 << 20


class DepthwisePlan:
    """A depthwise conv's geometry, decided once per call (its figures read in every block).

    2-D convs (``flat``) lay each output row at ``width``, the width of the padded input's stride
    phase planes: output ``(r, col)`` sits at ``r * width + col`` and ``run`` covers the last valid
    output; ``phases``, ``plane`` and ``placed`` describe those planes (``_windows``). Other ranks
    keep the output shape (``width`` its last axis, ``run`` all pixels, no phases).
    """

    def __init__(self, shape, w, begin, end, strides, dilations, out_shape, budget=BLOCK_BUDGET):
        """For an input of ``shape``, weight ``w``, the Conv's geometry; ``budget``: elements of
        a block's columns."""
        self.n, self.c = shape[:2]
        self.mult = w.shape[0] // self.c
        self.spatial, self.kernel, self.out_shape = tuple(shape[2:]), tuple(w.shape[2:]), tuple(out_shape)
        self.strides, self.dilations = tuple(strides), tuple(dilations)
        self.begin, self.end = tuple(begin), tuple(end)
        self.taps, self.pixels = math.prod(self.kernel), math.prod(self.out_shape)
        self.padded = any(begin) or any(end)
        self.padded_shape = tuple(s + b0 + e0 for s, b0, e0 in zip(self.spatial, begin, end))
        self.interior = tuple(slice(b0, b0 + s) for b0, s in zip(begin, self.spatial))
        self.flat = len(self.kernel) == 2
        if self.flat:
            self.plane = phase_plane(self.spatial, begin, end, strides)
            self.phases = phases(self.kernel, strides, dilations)
            self.placed = placed(begin, self.spatial, strides)
            self.width = self.plane[1]
            self.run = (self.out_shape[0] - 1) * self.width + self.out_shape[1]
        else:
            self.plane, self.phases, self.placed = (), [], []
            self.width, self.run = self.out_shape[-1], self.pixels
        self.per_block = max(1, min(self.c, budget // (self.taps * self.out_shape[0] * self.width)))
        rest = (self.run,) if self.flat else self.out_shape
        self.view_shape = (self.per_block,) + self.kernel + rest  # the columns by kernel tap

    def blocks(self) -> list[tuple[int, int, int]]:
        """``(image, first channel, end channel)`` of every block, image by image."""
        c, step = self.c, self.per_block
        return [(i, c0, min(c, c0 + step)) for i in range(self.n) for c0 in range(0, c, step)]

    def weights(self, w, b):
        """``w`` as ``(C, mult, taps)`` and ``b`` as ``(C, mult, 1)`` (None without a bias)."""
        return w.reshape(self.c, self.mult, self.taps), None if b is None else b.reshape(self.c, self.mult, 1)


class Columns:
    """A worker's im2col buffer ``cols``, ``(channels, taps, run)``, and its view by kernel tap.

    ``fill(image, i, c0, c1)`` copies the windows of channels ``c0:c1`` of ``image(i)`` into it
    and returns how many channels it holds.
    """

    def __init__(self, plan: DepthwisePlan, dtype):
        self.plan = plan
        self.cols = np.empty((plan.per_block, plan.taps, plan.run), dtype=dtype)
        self.view = self.cols.reshape(plan.view_shape)


class WindowColumns(Columns):
    """Unpadded, not 2-D: the windows straight from the image."""

    def fill(self, image, i, c0, c1) -> int:
        p, k = self.plan, c1 - c0
        win = windows(image(i)[None, c0:c1], p.kernel, p.strides, p.dilations, p.out_shape)[0]
        np.copyto(self.view[:k], win[:k])  # the one im2col copy
        return k


class PaddedColumns(Columns):
    """Padded, not 2-D: each block is copied into a scratch plane whose border stays zero."""

    def __init__(self, plan: DepthwisePlan, dtype):
        super().__init__(plan, dtype)
        self.scratch = np.zeros((plan.per_block,) + plan.padded_shape, dtype=dtype)
        self.interior = (slice(None),) + plan.interior
        self.win = windows(self.scratch[None], plan.kernel, plan.strides, plan.dilations, plan.out_shape)[0]

    def fill(self, image, i, c0, c1) -> int:
        k = c1 - c0
        self.scratch[:k][self.interior] = image(i)[c0:c1]
        np.copyto(self.view[:k], self.win[:k])
        return k


class PhaseColumns(Columns):
    """2-D: each block is copied into the stride phases of its padded plane (zero border), whose
    windows are contiguous runs."""

    def __init__(self, plan: DepthwisePlan, dtype):
        super().__init__(plan, dtype)
        self.scratch = np.zeros((plan.per_block,) + plan.strides + plan.plane, dtype=dtype)
        self.copies = phase_windows(self.scratch, self.view, plan.phases, plan.width, plan.run)
        used = {phase for phase, *_ in plan.phases}
        self.fills = [
            ((slice(None),) + phase + dst, (slice(None),) + src)
            for phase, src, dst in plan.placed
            if phase in used
        ]

    def fill(self, image, i, c0, c1) -> int:
        k = c1 - c0
        src = image(i)[c0:c1]
        for dst, part in self.fills:
            self.scratch[:k][dst] = src[part]
        for dst, window in self.copies:
            np.copyto(dst[:k], window[:k])
        return k


def columns_for(plan: DepthwisePlan, dtype) -> Columns:
    """The column maker a plain image needs: phase planes in 2-D, a padded scratch or none else."""
    if plan.flat:
        return PhaseColumns(plan, dtype)
    return PaddedColumns(plan, dtype) if plan.padded else WindowColumns(plan, dtype)


class BlockProduct:
    """A worker's matmul of a block's columns by its channels' weights, into ``out``
    ``(channels, mult, pixels)``, then the bias and ``post(block, c0, c1)`` (see ``convolve``).

    ``at_width``: ``out`` holds each 2-D output row at the plan's ``width`` (the caller drops the
    extra columns); otherwise a 2-D block is computed at that width in a buffer and copied out
    compact.
    """

    def __init__(self, plan: DepthwisePlan, wt, bias, post, dtype, at_width: bool = False):
        self.wt, self.bias, self.post, self.mult = wt, bias, post, plan.mult
        self.run, self.out_shape, self.width = plan.run, plan.out_shape, plan.width
        if at_width:
            self.multiply = self._at_width
        elif plan.flat:
            self.wide = np.empty((plan.per_block, plan.mult, plan.out_shape[0] * plan.width), dtype=dtype)
            self.multiply = self._then_compact
        else:
            self.multiply = self._compact

    def __call__(self, cols, k, c0, c1, out) -> None:
        self.multiply(cols, k, c0, c1, out)
        if self.bias is not None:
            out += self.bias[c0:c1]
        if self.post is not None:
            self.post(out.reshape(k * self.mult, -1), c0 * self.mult, c1 * self.mult)

    def _compact(self, cols, k, c0, c1, out):
        np.matmul(self.wt[c0:c1], cols[:k], out=out)

    def _at_width(self, cols, k, c0, c1, out):
        np.matmul(self.wt[c0:c1], cols[:k], out=out[:, :, : self.run])

    def _then_compact(self, cols, k, c0, c1, out):
        rows, width = self.out_shape[0], self.width
        np.matmul(self.wt[c0:c1], cols[:k], out=self.wide[:k, :, : self.run])
        np.copyto(
            out.reshape((k, self.mult) + self.out_shape),
            self.wide[:k].reshape(k, self.mult, rows, width)[..., : self.out_shape[1]],
        )


def conv_depthwise(x, w, begin, end, strides, dilations, out_shape, b=None, post=None):
    """Depthwise Conv of ``x`` ``(N, C, *spatial)`` with ``w`` ``(C * mult, 1, *kernel)``, the
    padding ``begin``/``end`` applied per block; ``post`` as in ``convolve``."""
    plan = DepthwisePlan(x.shape, w, begin, end, strides, dilations, out_shape)
    wt, bias = plan.weights(w, b)
    dtype = np.result_type(x, w)
    y = np.empty((plan.n, plan.c, plan.mult, plan.pixels), dtype=dtype)
    blocks = plan.blocks()

    def work(start, stop):
        columns = columns_for(plan, x.dtype)
        product = BlockProduct(plan, wt, bias, post, dtype)
        for i, c0, c1 in blocks[start:stop]:
            k = columns.fill(x.__getitem__, i, c0, c1)
            product(columns.cols, k, c0, c1, y[i][c0:c1])

    run_chunks(work, len(blocks), -(-len(blocks) // WORKERS), blas=True)
    return y.reshape((plan.n, plan.c * plan.mult) + plan.out_shape)
