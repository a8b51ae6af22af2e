"""Kernels: window functions (HannWindow, HammingWindow, BlackmanWindow) and Det."""

from __future__ import annotations

import numpy as np

from xverify.engine.registry import op


def _window(terms):
    """A cosine-sum window sum_k a_k cos(2 pi k n / N) (signs alternate), N = size when periodic,
    size - 1 otherwise."""

    def kernel(size, output_datatype=1, periodic=1, ctx=None):
        n_points = int(np.asarray(size).reshape(-1)[0])
        denominator = n_points if periodic else n_points - 1
        n = np.arange(n_points, dtype=np.float64)
        w = sum((-1) ** k * a * np.cos(2 * np.pi * k * n / denominator) for k, a in enumerate(terms))
        return w.astype(ctx.np_dtype(output_datatype))

    return kernel


for _name, _terms in {"HannWindow": (0.5, 0.5), "HammingWindow": (25 / 46, 21 / 46),
                      "BlackmanWindow": (0.42, 0.5, 0.08)}.items():
    op(_name, context=True, attributes=("output_datatype", "periodic"))(_window(_terms))


@op("Det", notes="over the last two axes")
def det(x):
    return np.linalg.det(x).astype(x.dtype, copy=False)
