"""Kernels: Conv and ConvTranspose (1D/2D/3D, grouped and depthwise).

Speed matters here (a ResNet50 is ~50 convs), so no kernel loops over pixels:

* Conv is im2col + one BLAS matmul per image (or band of output rows): an ``as_strided`` window
  view of the padded input is copied once into a ``(C*k, out_pixels)`` matrix and multiplied by
  the weights. A 1x1 stride-1 conv needs no copy at all. Images run on a small thread pool whose
  workers use single-threaded BLAS (``run_chunks``), which stays fast when cores are shared.
* Depthwise conv (one input channel per group) is im2col per cache-sized block of channels and a
  batched matmul (one small matrix product per channel), padded per block in cache rather than
  in a padded copy of the whole input; 2-D convs keep that plane as its stride phases, so that
  each tap's window is one contiguous run of a flattened phase plane.
* ConvTranspose is the adjoint: one matmul to the columns, then a scatter-add over the taps (col2im).

The padding helpers are shared with ``pool.py``.
"""

from __future__ import annotations

import itertools
import math
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from xverify.engine.ops._parallel import WORKERS as _WORKERS
from xverify.engine.ops._parallel import run_chunks
from xverify.engine.registry import op
from xverify.errors import UnsupportedOpError

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")
# Bound on an im2col buffer (elements): large enough for one big matmul, small enough not to
# double a model's peak memory (a conv on a large image is split into bands of output rows).
_COLS_BUDGET = 1 << 22
# Depthwise im2col block (elements, 4 MB in float32): larger blocks mean fewer Python-level calls,
# which hold the GIL and so serialize the pool; measured best on MobileNetV2 (1<<18..1<<21).
_DEPTHWISE_BUDGET = 1 << 20
_PARALLEL_MACS = 1 << 22  # convs smaller than this run on the calling thread
# A pointwise conv makes a strided depthwise conv's input as padded stride phases when these
# add at most this share of columns to its matmul (measured on MobileNetV2: a gain on 112x112
# and 56x56 planes, a loss on 28x28 and smaller).
_PHASED_EXTRA = 1.1
# A fused depthwise conv hands its output to the pointwise conv after it with each row at the
# computed width (the extra columns are dropped from the pointwise conv's output, six times
# smaller in MobileNet) when that adds at most this share of columns (measured on MobileNetV2:
# a gain down to 14x14 planes, 16 columns computed for 14, a loss on 7x7).
_WIDE_EXTRA = 1.2


def check_auto_pad(op_type: str, auto_pad: str) -> None:
    if auto_pad not in AUTO_PADS:
        raise UnsupportedOpError(
            f"{op_type}: auto_pad={auto_pad!r} is not supported; supported values are {', '.join(AUTO_PADS)}"
        )


def resolve_pads(op_type, auto_pad, in_shape, kernel, strides, dilations, pads):
    """Begin and end padding per spatial axis, as ONNX defines it for Conv and the pooling ops.

    SAME_* pads so that ``out = ceil(in / stride)``; SAME_UPPER puts the odd extra pixel at the end.
    """
    check_auto_pad(op_type, auto_pad)
    n = len(in_shape)
    if auto_pad == "NOTSET":
        pads = list(pads) if pads else [0] * (2 * n)
        return pads[:n], pads[n:]
    if auto_pad == "VALID":
        return [0] * n, [0] * n
    begin, end = [], []
    for size, k, s, d in zip(in_shape, kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else big)
        end.append(big if auto_pad == "SAME_UPPER" else small)
    return begin, end


def pad_spatial(x: np.ndarray, begin, end, value=0) -> np.ndarray:
    """``x`` with its spatial axes (2:) padded by ``value``; no copy when there is no padding.

    Allocating, copying the interior and filling only the border slabs is one memory pass, several
    times faster than ``np.pad``.
    """
    if not any(begin) and not any(end):
        return x
    shape = x.shape[:2] + tuple(s + b + e for s, b, e in zip(x.shape[2:], begin, end))
    out = np.empty(shape, dtype=x.dtype)
    interior = tuple(slice(b, b + s) for b, s in zip(begin, x.shape[2:]))

    def work(start, stop):  # large batches are copied in slices on the kernel pool
        dst = out[start:stop]
        dst[(slice(None), slice(None)) + interior] = x[start:stop]
        for axis, (b, size) in enumerate(zip(begin, x.shape[2:]), start=2):
            lead = (slice(None),) * axis
            dst[lead + (slice(0, b),)] = value
            dst[lead + (slice(b + size, None),)] = value

    n = x.shape[0]
    run_chunks(work, n, max(1, n if out.size < _COLS_BUDGET // 4 else -(-n // _WORKERS)))
    return out


def windows(xp: np.ndarray, kernel, strides, dilations, out_shape) -> np.ndarray:
    """A read-only view ``(N, C, *kernel, *out_shape)`` of every window of ``xp``; no copy."""
    sp = xp.strides[2:]
    shape = xp.shape[:2] + tuple(kernel) + tuple(out_shape)
    strides = (
        xp.strides[:2]
        + tuple(st * d for st, d in zip(sp, dilations))
        + tuple(st * s for st, s in zip(sp, strides))
    )
    return as_strided(xp, shape, strides, writeable=False)


def tap_slice(tap, strides, dilations, out_shape) -> tuple:
    """Index selecting, for kernel position ``tap``, the input pixel under it for every output."""
    return (slice(None), slice(None)) + tuple(
        slice(t * d, t * d + (o - 1) * s + 1, s) for t, s, d, o in zip(tap, strides, dilations, out_shape)
    )


def _spatial_attrs(op_type, x, kernel, strides, dilations, kernel_shape):
    n = x.ndim - 2
    if n < 1:
        raise UnsupportedOpError(f"{op_type}: input of rank {x.ndim}; need (N, C, spatial...)")
    if kernel_shape is not None and tuple(kernel_shape) != tuple(kernel):
        raise UnsupportedOpError(
            f"{op_type}: kernel_shape={kernel_shape} differs from the weight's "
            f"spatial shape {list(kernel)}; only equal values are supported"
        )
    return list(strides or [1] * n), list(dilations or [1] * n)


def _conv_gemm(xp, w, strides, dilations, out_shape, b=None, post=None):
    """Dense conv of an already padded input: im2col per image, then one matmul per image.

    Images (or, for a single image, bands of output rows) are split over the thread pool, each
    worker running single-threaded BLAS on its share: two OpenBLAS threads synchronize by
    spinning, which collapses (10x slower here) as soon as another process takes one of the cores,
    while independent shares just finish later. The bias ``b`` is added to each share while it is
    still in cache, and so is ``post`` (see ``conv``).
    """
    n, c = xp.shape[:2]
    m, kernel = w.shape[0], w.shape[2:]
    k = c * math.prod(kernel)
    p = math.prod(out_shape)
    w2 = w.reshape(m, k)
    bias = None if b is None else b.reshape(m, 1)
    y = np.empty((n, m, p), dtype=np.result_type(xp, w))
    rows, inner = out_shape[0], p // out_shape[0]
    pointwise = all(v == 1 for v in kernel) and all(s == 1 for s in strides)
    bands = 1 if n >= _WORKERS or n * m * k * p < _PARALLEL_MACS else _WORKERS
    if not pointwise:  # bound each im2col copy, however large the image
        bands = max(bands, -(-k * p // _COLS_BUDGET))
    bands = min(bands, rows)
    units = [(i, rows * b // bands, rows * (b + 1) // bands) for i in range(n) for b in range(bands)]
    if pointwise:
        src = xp.reshape(n, c, p)  # 1x1 stride 1: the input already is the column matrix

        def work(start, stop):
            for i, r0, r1 in units[start:stop]:
                _matmul_post(
                    w2, src[i, :, r0 * inner : r1 * inner], y[i, :, r0 * inner : r1 * inner], bias, post
                )
    else:
        win = windows(xp, kernel, strides, dilations, out_shape)
        first_out = 2 + len(kernel)

        def work(start, stop):
            for i, r0, r1 in units[start:stop]:
                band = win[(i,) + (slice(None),) * (first_out - 1) + (slice(r0, r1),)]
                cols = band.reshape(k, (r1 - r0) * inner)  # the one im2col copy
                _matmul_post(w2, cols, y[i, :, r0 * inner : r1 * inner], bias, post)

    workers = _WORKERS if n * m * k * p >= _PARALLEL_MACS else 1
    run_chunks(work, len(units), -(-len(units) // workers), blas=True)
    return y.reshape((n, m) + tuple(out_shape))


def _matmul_post(w2, cols, out, bias, post):
    """``out = w2 @ cols (+ bias)``, then ``post`` on it: one image's (or band's) share of a conv."""
    np.matmul(w2, cols, out=out)
    if bias is not None:
        out += bias
    if post is not None:
        post(out, 0, out.shape[0])


def _phases(kernel, strides, dilations):
    """The taps of a 2-D kernel grouped by the stride phase of the padded plane they read.

    Tap ``(ky, kx)`` reads padded pixel ``(s_h * oy + ky * d_h, s_w * ox + kx * d_w)`` of output
    ``(oy, ox)``: pixel ``(oy + ky * d_h // s_h, ox + kx * d_w // s_w)`` of the phase plane
    ``(ky * d_h % s_h, kx * d_w % s_w)`` (every ``s``-th row and column from there), a stride-1
    read. The taps of one phase are a grid with even steps in the kernel and in that plane.
    Returns ``(phase, kernel slices, first offset, offset steps)`` for each phase that has taps.
    """
    axes = []
    for k, s, d in zip(kernel, strides, dilations):
        groups = {}
        for t in range(k):
            groups.setdefault(t * d % s, []).append(t)
        axes.append(
            [
                (
                    phase,
                    slice(ts[0], ts[-1] + 1, ts[1] - ts[0] if len(ts) > 1 else 1),
                    ts[0] * d // s,
                    (ts[1] - ts[0]) * d // s if len(ts) > 1 else 0,
                )
                for phase, ts in sorted(groups.items())
            ]
        )
    return [((a, b), (ys, xs), (fy, fx), (sy, sx)) for a, ys, fy, sy in axes[0] for b, xs, fx, sx in axes[1]]


def _phase_plane(size, begin, end, strides):
    """The shape of each stride phase of a padded plane (every ``s``-th row and column)."""
    return tuple(-(-(m + b0 + e0) // s) for m, b0, e0, s in zip(size, begin, end, strides))


def _placed(begin, size, strides):
    """Where the input lands in each stride phase of its padded plane: ``(phase, input slices,
    plane slices)``, per axis the input indices and the phase plane's rows or columns holding
    them (input index ``i`` sits in phase ``(begin + i) % s``, at ``(begin + i) // s``)."""
    placed = []
    for phase in itertools.product(*(range(s) for s in strides)):
        src, dst = [], []
        for p, b0, n, s in zip(phase, begin, size, strides):
            first = (p - b0) % s
            count = len(range(first, n, s))
            src.append(slice(first, first + (count - 1) * s + 1 if count else first, s))
            dst.append(slice((b0 + first) // s, (b0 + first) // s + count))
        placed.append((phase, tuple(src), tuple(dst)))
    return placed


def _phase_windows(planes, cols, phases, width, run):
    """The im2col copies of a 2-D depthwise conv from its stride-phase planes
    ``(channels, s_h, s_w, *plane)``: per phase, ``(destination, window)`` where the destination
    is that phase's taps in ``cols`` ``(channels, k_h, k_w, run)`` and the window a read-only view
    of the flattened phase plane with one contiguous run per tap."""
    flat = planes.reshape(planes.shape[:3] + (-1,))
    st = flat.strides
    copies = []
    for (a, b), (ys, xs), first, step in phases:
        dst = cols[:, ys, xs]
        src = flat[:, a, b, first[0] * width + first[1] :]
        shape = (planes.shape[0],) + dst.shape[1:]
        copies.append(
            (
                dst,
                as_strided(
                    src, shape, (st[0], step[0] * width * st[3], step[1] * st[3], st[3]), writeable=False
                ),
            )
        )
    return copies


def _conv_depthwise(
    x, w, begin, end, strides, dilations, out_shape, b=None, post=None, image=None, finish=None, phased=False
):
    """Conv with one input channel per group: im2col per block of channels, then a batched matmul.

    ``w`` is ``(C * mult, 1, *kernel)``; output channel ``o`` reads input channel ``o // mult``.
    A multiply-accumulate over the taps would take two full memory passes per tap (NumPy has no
    fused multiply-add); instead each block of channels copies its windows once into a
    ``(channels, taps, pixels)`` buffer small enough to stay in cache, and one matmul
    ``(channels, mult, taps) @ (channels, taps, pixels)`` writes the block's output.
    The padding (``begin``/``end``) is applied per block too, in a cached scratch plane whose
    border stays zero, instead of in a padded copy of the whole input (a full memory pass).
    A 2-D stride-1 conv computes each output row at the padded width, so that every tap's window
    is one contiguous run of the flattened padded plane (long copies, not one per output row;
    1.5-2x faster on 28x28 and smaller planes), and drops the extra columns afterwards.
    A strided 2-D conv does the same on the stride phases of its padded input (``_phases``)
    when they are given (``phased``); its windows are strided gathers otherwise.
    Blocks run on a thread pool (each matmul is too small for BLAS to thread it).

    For the convs fused around it (``depthwise_between``): ``image(i)`` gives image ``i`` of the
    input, ``(C, *spatial)``, made on demand (``x`` is then only the input's shape and dtype), or,
    with ``phased``, its padded stride phases ``(C, s_h, s_w, *plane)`` (the same array object
    each time on one thread); ``finish(i, out, width)`` takes image ``i`` of the output as soon as
    it is done (nothing is returned then): ``(C * mult, pixels)`` (``width`` None), or, on planes
    where that adds few columns, with each row at the computed ``width``, the extra columns
    holding finite values to be dropped. Each worker is given whole images, so that it makes
    each image once and reads it back from its cache.
    """
    n, c = x.shape[:2]
    mult = w.shape[0] // c
    kernel = w.shape[2:]
    taps, pixels = math.prod(kernel), math.prod(out_shape)
    padded = tuple(s + b0 + e0 for s, b0, e0 in zip(x.shape[2:], begin, end))
    interior = tuple(slice(b0, b0 + s) for b0, s in zip(begin, x.shape[2:]))
    flat = len(kernel) == 2
    if flat:  # output (r, col) sits at r * width + col; ``run`` covers the last valid output
        phases = _phases(kernel, strides, dilations)
        plane = _phase_plane(x.shape[2:], begin, end, strides)
        placed = _placed(begin, x.shape[2:], strides)
        width = plane[1]
        run = (out_shape[0] - 1) * width + out_shape[1]
    else:
        width, run = out_shape[-1], pixels
    wt = w.reshape(c, mult, taps)
    bias = None if b is None else b.reshape(c, mult, 1)
    dtype = np.result_type(x, w)
    y = None if finish else np.empty((n, c, mult, pixels), dtype=dtype)
    per_block = max(1, min(c, _DEPTHWISE_BUDGET // (taps * out_shape[0] * width)))
    blocks = [(i, c0, min(c, c0 + per_block)) for i in range(n) for c0 in range(0, c, per_block)]
    scratched = not phased and (flat or any(begin) or any(end))
    # The reader of each output image (``finish``) can take it at the computed width.
    wide_held = finish is not None and flat and width <= _WIDE_EXTRA * out_shape[1]
    # Whole images per worker when a producer makes them; else even shares of blocks.
    whole = image is not None or finish is not None
    chunk = -(-c // per_block) * -(-n // _WORKERS) if whole else -(-len(blocks) // _WORKERS)
    image = image or x.__getitem__

    def work(start, stop):
        # One output image for ``finish``; at the computed width, where it has few extra columns.
        held = (
            None
            if finish is None
            else np.zeros((c, mult, out_shape[0] * width if wide_held else pixels), dtype=dtype)
        )
        cols = np.empty((per_block, taps, run), dtype=x.dtype)
        view = cols.reshape((per_block,) + tuple(kernel) + ((run,) if flat else tuple(out_shape)))
        if scratched:  # only the interior is ever written: the border keeps its zeros
            if flat:  # the stride phases of the padded plane
                scratch = np.zeros((per_block,) + tuple(strides) + plane, dtype=x.dtype)
                copies = _phase_windows(scratch, view, phases, width, run)
                used = {phase for phase, *_ in phases}
                fills = [
                    ((slice(None),) + phase + dst, (slice(None),) + src)
                    for phase, src, dst in placed
                    if phase in used
                ]
            else:
                scratch = np.zeros((per_block,) + padded, dtype=x.dtype)
                win = windows(scratch[None], kernel, strides, dilations, out_shape)[0]
        if flat and not wide_held:
            wide = np.empty((per_block, mult, out_shape[0] * width), dtype=dtype)
        planes = None
        for i, c0, c1 in blocks[start:stop]:
            k = c1 - c0
            if phased:  # the producer's own padded phases: windows straight from them
                made = image(i)
                if made is not planes:  # the first image on this thread
                    planes = made
                    copies = _phase_windows(planes, view, phases, width, run)
                for dst, src in copies:
                    np.copyto(dst[:k], src[c0:c1])
            else:
                if flat:
                    src = image(i)[c0:c1]
                    for dst, part in fills:
                        scratch[:k][dst] = src[part]
                elif scratched:
                    scratch[(slice(0, k),) + interior] = image(i)[c0:c1]
                else:
                    win = windows(image(i)[None, c0:c1], kernel, strides, dilations, out_shape)[0]
                if flat:
                    for dst, src in copies:
                        np.copyto(dst[:k], src[:k])
                else:
                    np.copyto(view[:k], win[:k])  # the one im2col copy
            out = (held if finish else y[i])[c0:c1]
            if wide_held:
                np.matmul(wt[c0:c1], cols[:k], out=out[:, :, :run])
            elif flat:
                np.matmul(wt[c0:c1], cols[:k], out=wide[:k, :, :run])
                np.copyto(
                    out.reshape((k, mult) + tuple(out_shape)),
                    wide[:k].reshape(k, mult, out_shape[0], width)[..., : out_shape[1]],
                )
            else:
                np.matmul(wt[c0:c1], cols[:k], out=out)
            if bias is not None:
                out += bias[c0:c1]
            if post is not None:
                post(out.reshape(k * mult, -1), c0 * mult, c1 * mult)
            if finish is not None and c1 == c:
                finish(i, held.reshape(c * mult, -1), width if wide_held else None)

    run_chunks(work, len(blocks), chunk, blas=True)
    return None if finish else y.reshape((n, c * mult) + tuple(out_shape))


def _apply(post, y):
    """``y`` (N, C, ...) after ``post`` ran on each image (a path without a per-block hook)."""
    if post is not None:
        for image in y:
            post(image.reshape(image.shape[0], -1), 0, image.shape[0])
    return y


def _geometry(x, w, auto_pad, dilations, group, kernel_shape, pads, strides):
    """A Conv's checked ``strides, dilations, begin pads, end pads, output spatial shape``."""
    kernel = w.shape[2:]
    strides, dilations = _spatial_attrs("Conv", x, kernel, strides, dilations, kernel_shape)
    c = x.shape[1]
    if c % group or w.shape[0] % group or w.shape[1] * group != c:
        raise ValueError(f"Conv: input channels {c}, weight {w.shape} and group={group} disagree")
    begin, end = resolve_pads("Conv", auto_pad, x.shape[2:], kernel, strides, dilations, pads)
    out_shape = [
        (size + b0 + e0 - (k - 1) * d - 1) // s + 1
        for size, b0, e0, k, s, d in zip(x.shape[2:], begin, end, kernel, strides, dilations)
    ]
    if min(out_shape) < 1:
        raise ValueError(
            f"Conv: kernel {list(kernel)} (dilations {dilations}) does not fit the "
            f"input {list(x.shape[2:])} padded by {begin}/{end}"
        )
    return strides, dilations, begin, end, out_shape


def _geometry_of(x, w, group, attrs):
    """``_geometry`` of a Conv given by its attribute dict (as the fused steps hold them)."""
    return _geometry(
        x,
        w,
        attrs.get("auto_pad", "NOTSET"),
        attrs.get("dilations"),
        group,
        attrs.get("kernel_shape"),
        attrs.get("pads"),
        attrs.get("strides"),
    )


def is_pointwise(w, attrs) -> bool:
    """Whether a Conv with weight ``w`` and attributes ``attrs`` is a plain 1x1 conv (a matmul per
    pixel): group 1, stride 1, no padding."""
    n = w.ndim - 2
    return (
        n >= 1
        and all(v == 1 for v in w.shape[2:])
        and attrs.get("group", 1) == 1
        and all(v == 1 for v in attrs.get("strides") or [1] * n)
        and all(v == 1 for v in attrs.get("kernel_shape") or [1] * n)
        and attrs.get("auto_pad", "NOTSET") in AUTO_PADS
        and not any(attrs.get("pads") or [0] * (2 * n))
    )


def depthwise_between(x, dw, attrs, before=None, after=None, residual=None):
    """A depthwise Conv with the Convs around it (one making its input, a pointwise one reading
    its output), image by image, without the tensors between them.

    ``dw``, ``before`` and ``after`` are ``(weight, bias, post, attributes)``; ``before`` (optional)
    is a Conv (group 1) making the depthwise conv's input from ``x``, ``after`` (optional) a
    pointwise Conv reading its output. MobileNet's expand conv writes a tensor six times wider than its
    input, which the depthwise conv reads right back, and the projection reads the depthwise
    output: round trips through memory for the largest tensors of the model. Here a worker makes
    one image of the expanded tensor (the same ``_matmul_post`` call as ``_conv_gemm`` makes, so the
    numbers are the same bit for bit) just before its depthwise blocks read it from cache, and
    projects the image as soon as its last block is done. Where a strided depthwise conv reads a
    large plane, the expand conv makes the image as its stride phases instead
    (``_phased_producer``), and on planes down to 14x14 the projection takes rows at the width the
    depthwise conv computes (``_WIDE_EXTRA``): those matmuls run over other columns than the
    nodes' own, and OpenBLAS can then round a result differently in its last bit.
    ``residual`` (optional, of the result's dtype) is added to the result, image by image where it
    has the result's shape (MobileNetV2's skip connections), else as NumPy broadcasts it. Falls
    back to the convs one after the other for fewer images than workers (one image per worker
    would leave the others idle) and for non-float or mixed dtypes.
    """
    w, b, post = dw[:3]
    parts = [part for part in (before, dw, after) if part is not None]
    c = w.shape[0] if before is None else before[0].shape[0]
    n, mid = x.shape[0], x.shape[2:]
    if before is not None:
        w1, b1, post1, attrs1 = before
        strides1, dilations1, begin1, end1, mid = _geometry_of(x, w1, 1, attrs1)
        k1, pointwise = math.prod(w1.shape[1:]), is_pointwise(w1, attrs1)
    if (
        n < _WORKERS
        or x.dtype.kind != "f"
        or len({x.dtype} | {part[0].dtype for part in parts}) > 1
        or w.shape[1] != 1
        or attrs.get("group", 1) != c
        or (before is not None and k1 * math.prod(mid) > _COLS_BUDGET and not pointwise)
    ):
        # (a larger im2col would be split into bands by _conv_gemm: other matmul calls)
        if before is not None:
            x = conv(x, *before[:2], post=before[2], **before[3])
        y = conv(x, w, b, post=post, **attrs)
        y = y if after is None else conv(y, *after[:2], post=after[2], **after[3])
        return _plus(y, residual)
    # The depthwise conv's input: x, or only its shape and dtype when made image by image.
    carrier = x if before is None else np.broadcast_to(np.zeros((), x.dtype), (n, c) + tuple(mid))
    strides, dilations, begin, end, out_shape = _geometry_of(carrier, w, c, attrs)
    image = finish = y = None
    phased = False
    if before is not None:
        w1m, bias1 = w1.reshape(c, k1), None if b1 is None else b1.reshape(c, 1)
        plane = _phase_plane(mid, begin, end, strides)
        # A strided depthwise conv would read strided windows of a plain image (slow gathers);
        # the padded phases add columns to the matmul, too many on small planes.
        phased = (
            pointwise
            and len(mid) == 2
            and any(s > 1 for s in strides)
            and math.prod(strides) * math.prod(plane) <= _PHASED_EXTRA * math.prod(mid)
        )
        if phased:
            image = _phased_producer(x, w1m, bias1, post1, begin, end, strides, plane)
        else:
            if pointwise:
                src = x.reshape(n, k1, -1)  # the column matrices, as in _conv_gemm
            else:
                win = windows(pad_spatial(x, begin1, end1), w1.shape[2:], strides1, dilations1, mid)
            local = threading.local()

            def image(i):
                if getattr(local, "index", None) != i:
                    if getattr(local, "buffer", None) is None:
                        local.buffer = np.empty((c, math.prod(mid)), dtype=x.dtype)
                    cols = src[i] if pointwise else win[i].reshape(k1, -1)  # _conv_gemm's im2col
                    _matmul_post(w1m, cols, local.buffer, bias1, post1)
                    local.index = i
                return local.buffer.reshape(carrier.shape[1:])

    if after is not None:
        w3, b3, post3 = after[:3]
        w3, bias3 = w3.reshape(w3.shape[0], -1), None if b3 is None else b3.reshape(-1, 1)
        y = np.empty((n, w3.shape[0], math.prod(out_shape)), dtype=x.dtype)
        skip = residual is not None and residual.shape == (n, w3.shape[0]) + tuple(out_shape)

        local3 = threading.local()

        def finish(i, d, width):
            if width is None:
                _matmul_post(w3, d, y[i], bias3, post3)
                if skip:  # while the image is in cache
                    np.add(y[i], residual[i].reshape(y.shape[1:]), out=y[i])
                return
            if getattr(local3, "buffer", None) is None:
                local3.buffer = np.empty((w3.shape[0], d.shape[1]), dtype=x.dtype)
            _matmul_post(w3, d, local3.buffer, bias3, post3)
            rows = local3.buffer.reshape(w3.shape[0], out_shape[0], width)[..., : out_shape[1]]
            image = y[i].reshape(rows.shape)
            if skip:
                np.add(rows, residual[i], out=image)
            else:
                np.copyto(image, rows)

    out = _conv_depthwise(
        carrier, w, begin, end, strides, dilations, out_shape, b, post, image, finish, phased
    )
    out = out if y is None else y.reshape(y.shape[:2] + tuple(out_shape))
    return out if after is not None and skip else _plus(out, residual)


def _plus(y, residual):
    """``y + residual`` (``y`` when there is none), in place where the shapes agree; ``y`` is a
    fresh result nobody else holds."""
    if residual is None:
        return y
    return np.add(y, residual, out=y if residual.shape == y.shape else None)


def _phased_producer(x, w1m, bias1, post1, begin, end, strides, plane):
    """``image(i)`` for ``depthwise_between`` making a pointwise conv's output image ``i`` as the
    padded stride phases of the depthwise conv's input, ``(C, s_h, s_w, *plane)``.

    The pointwise conv's input pixels are gathered into that layout first (with zeros where the
    padding goes), so its matmul writes each output pixel straight to where the depthwise conv
    reads it: the input has a sixth of the channels in MobileNet, and the depthwise windows are
    then contiguous runs instead of strided gathers. The padding positions come out of the matmul
    as the bias (after ``post1``) and are zeroed. Each output column is the matmul of the same
    input column as in ``_conv_gemm``.
    """
    k1, c = w1m.shape[1], w1m.shape[0]
    placed = _placed(begin, x.shape[2:], strides)
    # The padding in each phase plane: the rows and columns around the input's. (Past the padded
    # plane, a phase plane is only read for output columns that are dropped.)
    border = []
    for phase, _, inside in placed:
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
        for phase, src, dst in placed:
            local.gathered[(slice(None),) + phase + dst] = x[i][(slice(None),) + src]
        _matmul_post(w1m, local.gathered.reshape(k1, -1), local.planes.reshape(c, -1), bias1, post1)
        for edge in border:
            local.planes[edge] = 0
        local.index = i
        return local.planes

    return image


@op(
    "Conv",
    attributes=("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"),
    notes="1D/2D/3D; grouped and depthwise; auto_pad NOTSET|VALID|SAME_UPPER|SAME_LOWER",
)
def conv(
    x,
    w,
    b=None,
    *,
    auto_pad="NOTSET",
    dilations=None,
    group=1,
    kernel_shape=None,
    pads=None,
    strides=None,
    post=None,
):
    """Y = W * X (+ B), cross-correlation as in ONNX, NCHW layout.

    ``post``: for the interpreter's fused steps (a Conv followed by a clamp; a Mul between them is
    folded into ``w`` and ``b``), ``post(block, c0, c1)`` finishes in place a
    ``(channels c0:c1, pixels)`` block of one image's output while it is still in cache, instead
    of in an extra pass over the whole tensor.
    """
    geometry = _geometry(x, w, auto_pad, dilations, group, kernel_shape, pads, strides)
    strides, dilations, begin, end, out_shape = geometry
    c = x.shape[1]
    if w.shape[1] == 1 and group > 1:
        return _conv_depthwise(x, w, begin, end, strides, dilations, out_shape, b, post)
    xp = pad_spatial(x, begin, end)
    if group == 1:
        return _conv_gemm(xp, w, strides, dilations, out_shape, b, post)
    cg, mg = c // group, w.shape[0] // group
    y = np.concatenate(
        [
            _conv_gemm(xp[:, g * cg : (g + 1) * cg], w[g * mg : (g + 1) * mg], strides, dilations, out_shape)
            for g in range(group)
        ],
        axis=1,
    )
    if b is not None:
        y += b.reshape((-1,) + (1,) * len(out_shape))
    return _apply(post, y)


@op(
    "ConvTranspose",
    attributes=(
        "auto_pad",
        "dilations",
        "group",
        "kernel_shape",
        "output_padding",
        "output_shape",
        "pads",
        "strides",
    ),
    notes="1D/2D/3D; grouped; auto_pad NOTSET|VALID|SAME_UPPER|SAME_LOWER; output_shape overrides pads "
    "(odd crop at the end for SAME_UPPER, at the start otherwise)",
)
def conv_transpose(
    x,
    w,
    b=None,
    *,
    auto_pad="NOTSET",
    dilations=None,
    group=1,
    kernel_shape=None,
    output_padding=None,
    output_shape=None,
    pads=None,
    strides=None,
):
    """The adjoint of Conv: each input pixel scatters ``W`` into the (strided) output."""
    kernel = w.shape[2:]
    strides, dilations = _spatial_attrs("ConvTranspose", x, kernel, strides, dilations, kernel_shape)
    check_auto_pad("ConvTranspose", auto_pad)
    nsp = len(kernel)
    n, c = x.shape[:2]
    if c % group or w.shape[0] != c:
        raise ValueError(f"ConvTranspose: input channels {c}, weight {w.shape} and group={group} disagree")
    adj = list(output_padding or [0] * nsp)
    full = [
        s * (i - 1) + a + (k - 1) * d + 1
        for i, s, a, k, d in zip(x.shape[2:], strides, adj, kernel, dilations)
    ]
    begin, end = _transpose_pads(auto_pad, x.shape[2:], full, strides, output_shape, pads, nsp)
    cg, mg = c // group, w.shape[1]
    dtype = np.result_type(x, w)
    # Accumulate into the uncropped output (output_padding extends it at the end), then crop.
    if any(b0 < 0 or e0 < 0 for b0, e0 in zip(begin, end)):
        raise UnsupportedOpError(
            f"ConvTranspose: output_shape={output_shape} is larger than the "
            f"full transposed output {full}; negative padding is not supported"
        )
    out = np.zeros((n, mg * group) + tuple(full), dtype=dtype)
    hw = math.prod(x.shape[2:])
    for g in range(group):
        xg = x[:, g * cg : (g + 1) * cg].reshape(n, cg, hw)
        wg = w[g * cg : (g + 1) * cg].reshape(cg, -1)
        cols = np.matmul(wg.T, xg).reshape((n, mg) + tuple(kernel) + tuple(x.shape[2:]))
        dst = out[:, g * mg : (g + 1) * mg]
        for tap in itertools.product(*(range(v) for v in kernel)):
            dst[tap_slice(tap, strides, dilations, x.shape[2:])] += cols[(slice(None), slice(None)) + tap]
    y = out[(slice(None), slice(None)) + tuple(slice(b0, f - e0) for b0, f, e0 in zip(begin, full, end))]
    if b is not None:
        y = y + b.reshape((-1,) + (1,) * nsp)
    return np.ascontiguousarray(y)


def _transpose_pads(auto_pad, in_shape, full, strides, output_shape, pads, nsp):
    """Begin/end crop of the full ConvTranspose output, following ONNX Runtime's rules."""
    target = None
    if output_shape:
        target = list(output_shape)[-nsp:]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = [i * s for i, s in zip(in_shape, strides)]
    if target is None:
        if auto_pad == "VALID":
            return [0] * nsp, [0] * nsp
        p = list(pads or [0] * (2 * nsp))
        return p[:nsp], p[nsp:]
    begin, end = [], []
    for f, t in zip(full, target):
        total = f - t
        small, big = total // 2, total - total // 2
        # As the ONNX spec says (and ONNX Runtime does): SAME_UPPER crops the odd pixel at the
        # end, SAME_LOWER and NOTSET at the start.
        begin.append(small if auto_pad == "SAME_UPPER" else big)
        end.append(big if auto_pad == "SAME_UPPER" else small)
    return begin, end
