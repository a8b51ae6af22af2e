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

import numpy as np

from xverify.engine.ops._parallel import WORKERS as _WORKERS
from xverify.engine.ops._parallel import run_chunks
from xverify.engine.ops._windows import windows
from xverify.engine.ops.depthwise import conv_depthwise
from xverify.engine.registry import op
from xverify.errors import UnsupportedOpError

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")
# Bound on an im2col buffer (elements): large enough for one big matmul, small enough not to
# double a model's peak memory (a conv on a large image is split into bands of output rows).
COLS_BUDGET = 1 << 22
_PARALLEL_MACS = 1 << 22  # convs smaller than this run on the calling thread


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
    run_chunks(work, n, max(1, n if out.size < COLS_BUDGET // 4 else -(-n // _WORKERS)))
    return out


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
    still in cache, and so is ``post`` (see ``convolve``).
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
        bands = max(bands, -(-k * p // COLS_BUDGET))
    bands = min(bands, rows)
    units = [(i, rows * b // bands, rows * (b + 1) // bands) for i in range(n) for b in range(bands)]
    if pointwise:
        src = xp.reshape(n, c, p)  # 1x1 stride 1: the input already is the column matrix

        def work(start, stop):
            for i, r0, r1 in units[start:stop]:
                matmul_post(
                    w2, src[i, :, r0 * inner : r1 * inner], y[i, :, r0 * inner : r1 * inner], bias, post
                )
    else:
        win = windows(xp, kernel, strides, dilations, out_shape)
        first_out = 2 + len(kernel)

        def work(start, stop):
            for i, r0, r1 in units[start:stop]:
                band = win[(i,) + (slice(None),) * (first_out - 1) + (slice(r0, r1),)]
                cols = band.reshape(k, (r1 - r0) * inner)  # the one im2col copy
                matmul_post(w2, cols, y[i, :, r0 * inner : r1 * inner], bias, post)

    workers = _WORKERS if n * m * k * p >= _PARALLEL_MACS else 1
    run_chunks(work, len(units), -(-len(units) // workers), blas=True)
    return y.reshape((n, m) + tuple(out_shape))


def matmul_post(w2, cols, out, bias, post):
    """``out = w2 @ cols (+ bias)``, then ``post`` on it: one image's (or band's) share of a conv."""
    np.matmul(w2, cols, out=out)
    if bias is not None:
        out += bias
    if post is not None:
        post(out, 0, out.shape[0])


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


def geometry_of(x, w, group, attrs):
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
):
    """Y = W * X (+ B), cross-correlation as in ONNX, NCHW layout."""
    return convolve(
        x,
        w,
        b,
        auto_pad=auto_pad,
        dilations=dilations,
        group=group,
        kernel_shape=kernel_shape,
        pads=pads,
        strides=strides,
    )


def convolve(
    x,
    w,
    b=None,
    post=None,
    *,
    auto_pad="NOTSET",
    dilations=None,
    group=1,
    kernel_shape=None,
    pads=None,
    strides=None,
):
    """The Conv kernel, with a hook for the fused steps (``xverify/engine/fast/``).

    ``post(block, c0, c1)`` finishes in place a ``(channels c0:c1, pixels)`` block of one image's
    output while it is still in cache (a clamp after the Conv), instead of in an extra pass over
    the whole tensor; None for the plain Conv.
    """
    geometry = _geometry(x, w, auto_pad, dilations, group, kernel_shape, pads, strides)
    strides, dilations, begin, end, out_shape = geometry
    c = x.shape[1]
    if w.shape[1] == 1 and group > 1:
        return conv_depthwise(x, w, begin, end, strides, dilations, out_shape, b, post)
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
    "(odd crop at the end for SAME_UPPER, at the start otherwise; beyond the full output, zeros at "
    "the end, less than the stride)",
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
    begin, end = _transpose_pads(auto_pad, x.shape[2:], full, strides, output_shape, pads, nsp, adj)
    cg, mg = c // group, w.shape[1]
    dtype = np.result_type(x, w)
    # Accumulate into the uncropped output (output_padding, or an output_shape beyond the full
    # output, extends it at the end), then crop.
    grown = [f - min(e0, 0) for f, e0 in zip(full, end)]
    out = np.zeros((n, mg * group) + tuple(grown), dtype=dtype)
    hw = math.prod(x.shape[2:])
    for g in range(group):
        xg = x[:, g * cg : (g + 1) * cg].reshape(n, cg, hw)
        wg = w[g * cg : (g + 1) * cg].reshape(cg, -1)
        cols = np.matmul(wg.T, xg).reshape((n, mg) + tuple(kernel) + tuple(x.shape[2:]))
        dst = out[:, g * mg : (g + 1) * mg]
        for tap in itertools.product(*(range(v) for v in kernel)):
            dst[tap_slice(tap, strides, dilations, x.shape[2:])] += cols[(slice(None), slice(None)) + tap]
    y = out[
        (slice(None), slice(None)) + tuple(slice(b0, g - max(e0, 0)) for b0, g, e0 in zip(begin, grown, end))
    ]
    if b is not None:
        y = y + b.reshape((-1,) + (1,) * nsp)
    return np.ascontiguousarray(y)


def _transpose_pads(auto_pad, in_shape, full, strides, output_shape, pads, nsp, adj):
    """Begin/end crop of the full ConvTranspose output, following ONNX Runtime's rules; a negative
    end extends the output there."""
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
    for f, t, s, a in zip(full, target, strides, adj):
        total = f - t
        if total < 0:
            # An output_shape beyond the full output adds zeros at the end, as output_padding
            # does, and like it by less than the stride (ONNX's reference, its node test
            # test_convtranspose_output_shape and ONNX Runtime agree; larger ones both reject).
            if a - total >= s:
                raise UnsupportedOpError(
                    f"ConvTranspose: output_shape={list(output_shape)} goes {-total} beyond the full "
                    f"output {full}; with output_padding {a} that reaches the stride {s}, so no Conv "
                    "input has this output (ONNX Runtime rejects it too); supported: output_padding "
                    "plus the excess below the stride"
                )
            begin.append(0)
            end.append(total)
            continue
        small, big = total // 2, total - total // 2
        # As the ONNX spec says (and ONNX Runtime does): SAME_UPPER crops the odd pixel at the
        # end, SAME_LOWER and NOTSET at the start.
        begin.append(small if auto_pad == "SAME_UPPER" else big)
        end.append(big if auto_pad == "SAME_UPPER" else small)
    return begin, end
