"""Window views for im2col: every window of a padded input, and the stride phases of a 2-D plane.

A strided 2-D conv reads every ``s``-th row and column of its padded input from a kernel tap on:
grouping the taps by the stride phase of the plane they read makes each tap's window one
contiguous run of a flattened phase plane (long copies instead of strided gathers). Shared by the
plain depthwise kernel (``depthwise.py``) and the fused steps (``xverify/engine/fast/``).
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.lib.stride_tricks import as_strided


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


def phases(kernel, strides, dilations):
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


def phase_plane(size, begin, end, strides):
    """The shape of each stride phase of a padded plane (every ``s``-th row and column)."""
    return tuple(-(-(m + b0 + e0) // s) for m, b0, e0, s in zip(size, begin, end, strides))


def placed(begin, size, strides):
    """Where the input lands in each stride phase of its padded plane: ``(phase, input slices,
    plane slices)``, per axis the input indices and the phase plane's rows or columns holding
    them (input index ``i`` sits in phase ``(begin + i) % s``, at ``(begin + i) // s``)."""
    result = []
    for phase in itertools.product(*(range(s) for s in strides)):
        src, dst = [], []
        for p, b0, n, s in zip(phase, begin, size, strides):
            first = (p - b0) % s
            count = len(range(first, n, s))
            src.append(slice(first, first + (count - 1) * s + 1 if count else first, s))
            dst.append(slice((b0 + first) // s, (b0 + first) // s + count))
        result.append((phase, tuple(src), tuple(dst)))
    return result


def phase_windows(planes, cols, phases, width, run):
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
