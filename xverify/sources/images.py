"""A folder of JPEG/PNG images, decoded with Pillow in sorted path order (extra ``images``).

Each image is converted to the model's channel count (1: grayscale, 3: RGB, 4: RGBA), resized to
its H x W with bilinear filtering, and stacked channels last as float32 in 0..255; a
``preprocess`` callable (``keras.applications.mobilenet_v2.preprocess_input``, say) then maps the
chunk, or nothing does when the model rescales itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from xverify.errors import InputDataError, UsageError
from xverify.sources import Source, only_input, require, sample_bytes

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def folder(path: Path, files: list[Path], specs, preprocess: Callable | None = None) -> Source:
    """The images under ``path`` (subfolders included) as one input of shape (N, H, W, C)."""
    spec = only_input(specs, path, "an image folder")
    require("PIL.Image", "Pillow", "images", f"{path}: reading an image folder")
    if len(spec.shape) != 4 or None in spec.shape[1:] or spec.shape[3] not in _MODES:
        raise InputDataError(
            f"{path}: images feed an input of shape (N, H, W, C) with fixed H, W and C in 1, 3 or 4 "
            f"(channels last), but input {spec.name!r} has shape {spec.shape}. Save the inputs as "
            ".npy instead."
        )
    height, width, channels = spec.shape[1:]

    def read(batch):
        for start in range(0, len(files), batch):
            chunk = np.stack([_decode(f, width, height, channels) for f in files[start : start + batch]])
            yield {spec.name: _preprocess(chunk, preprocess, files[start]) if preprocess else chunk}

    return Source(path, tuple(specs), len(files), sample_bytes(specs, {spec.name: spec.shape[1:]}), read)


def _decode(file: Path, width: int, height: int, channels: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(file) as image:
            image = image.convert(_MODES[channels]).resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32)
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... for a bad file
        raise InputDataError(
            f"{file}: cannot decode it as an image ({type(exc).__name__}: {exc}). Remove or replace the file."
        ) from exc
    return pixels.reshape(height, width, channels)


def _preprocess(chunk: np.ndarray, preprocess: Callable, first: Path) -> np.ndarray:
    result = np.asarray(preprocess(chunk))
    if result.shape != chunk.shape:
        raise InputDataError(
            f"the preprocessing function turned images of shape {chunk.shape} (from {first} on) "
            f"into shape {result.shape}; expected it to keep the shape."
        )
    return result


PREPROCESS_PREFIX = "keras.applications."


def preprocess_function(name: str | None) -> Callable | None:
    """The function a ``--preprocess`` name designates: ``none`` (the model rescales itself) or a
    Keras application's, e.g. ``keras.applications.mobilenet_v2.preprocess_input``.

    Only names under ``keras.applications.`` are imported: anything else would run a module the
    user named, which is user code.

    Raises:
        UsageError: another name, or a name that does not lead to a function.
    """
    import importlib

    if name is None or name.strip().lower() == "none":
        return None
    module_name, _, attribute = name.strip().rpartition(".")
    if not module_name.startswith(PREPROCESS_PREFIX) or not attribute:
        raise UsageError(
            f"--preprocess {name!r}: expected 'none' or a function under {PREPROCESS_PREFIX} "
            "(e.g. keras.applications.mobilenet_v2.preprocess_input)."
        )
    require("keras", "Keras", "keras", f"--preprocess {name}")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--preprocess {name!r}: no such function ({exc}).") from exc
    if not callable(function):
        raise UsageError(f"--preprocess {name!r}: is not a function.")
    return function
