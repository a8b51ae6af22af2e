"""Kernels: signal processing (DFT, STFT, MelWeightMatrix, Hann/Hamming/Blackman windows) and Det."""

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


for _name, _terms in {
    "HannWindow": (0.5, 0.5),
    "HammingWindow": (25 / 46, 21 / 46),
    "BlackmanWindow": (0.42, 0.5, 0.08),
}.items():
    op(_name, context=True, attributes=("output_datatype", "periodic"))(_window(_terms))


@op("Det", notes="over the last two axes")
def det(x):
    return np.linalg.det(x).astype(x.dtype, copy=False)


def _complex(x):
    """ONNX's signal layout (..., 1) real or (..., 2) real and imaginary, as a complex array (in
    complex64 for float32 and narrower, as a float32 runtime computes it)."""
    z = x[..., 0] + 1j * x[..., 1] if x.shape[-1] == 2 else x[..., 0] + 0j
    return z.astype(np.complex128 if x.dtype == np.float64 else np.complex64)


def _dft(x, length, axis, inverse, onesided):
    """The DFT of ``x`` (ONNX layout) along ``axis`` of the complex array, back in ONNX layout.
    ``inverse`` and ``onesided`` together: x holds half a spectrum, the result is real."""
    z = _complex(x)
    n = None if length is None else int(np.asarray(length).reshape(-1)[0])
    if inverse and onesided:
        return np.fft.irfft(z, n=n, axis=axis)[..., None].astype(x.dtype)
    n = z.shape[axis] if n is None else n
    y = np.fft.ifft(z, n=n, axis=axis) if inverse else np.fft.fft(z, n=n, axis=axis)
    if onesided:
        y = np.take(y, range(n // 2 + 1), axis=axis)
    return np.stack([y.real, y.imag], axis=-1).astype(x.dtype)


@op(
    "DFT",
    attributes=("inverse", "onesided"),
    since=20,
    notes="axis as input (default -2, counting the real/imaginary axis); dft_length pads or cuts",
)
def dft(x, dft_length=None, axis=None, inverse=0, onesided=0):
    a = -2 if axis is None else int(np.asarray(axis).reshape(-1)[0])
    a = a % x.ndim  # an axis of x, never its last (real/imaginary) one
    return _dft(x, dft_length, a, inverse, onesided)


@op(
    "DFT",
    attributes=("axis", "inverse", "onesided"),
    since=17,
    until=19,
    notes="axis as attribute (default 1)",
)
def dft_17(x, dft_length=None, axis=1, inverse=0, onesided=0):
    return _dft(x, dft_length, axis % (x.ndim - 1), inverse, onesided)


@op("STFT", attributes=("onesided",), notes="frames of frame_length every frame_step, windowed")
def stft(signal, frame_step, window=None, frame_length=None, onesided=1):
    step = int(np.asarray(frame_step).reshape(-1)[0])
    length = int(np.asarray(frame_length).reshape(-1)[0]) if frame_length is not None else len(window)
    n_frames = 1 + (signal.shape[1] - length) // step
    frames = np.stack([signal[:, i * step : i * step + length] for i in range(n_frames)], axis=1)
    if window is not None:
        frames = frames * np.asarray(window).reshape(1, 1, -1, 1)
    return _dft(frames.astype(signal.dtype), None, 2, 0, onesided)


def _mel(hz):
    return 2595 * np.log10(1 + hz / 700)


def _hz(mel):
    return 700 * (10 ** (mel / 2595) - 1)


@op(
    "MelWeightMatrix",
    context=True,
    attributes=("output_datatype",),
    notes="triangular filters on whole DFT bins, peak 1 (as ONNX Runtime)",
)
def mel_weight_matrix(
    num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz, output_datatype=1, ctx=None
):
    bins, length = int(num_mel_bins), int(dft_length)
    rate = float(sample_rate)
    low, high = _mel(float(lower_edge_hertz)), _mel(float(upper_edge_hertz))
    edges = np.floor((length + 1) * _hz(low + np.arange(bins + 2) * (high - low) / (bins + 2)) / rate).astype(
        np.int64
    )
    out = np.zeros((length // 2 + 1, bins))
    for i in range(bins):
        lower, center, upper = edges[i : i + 3]
        if center == lower:
            out[center, i] = 1
        else:
            out[lower : center + 1, i] = (np.arange(lower, center + 1) - lower) / (center - lower)
        if upper > center:
            out[center:upper, i] = (upper - np.arange(center, upper)) / (upper - center)
    return out.astype(ctx.np_dtype(output_datatype))
