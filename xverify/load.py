"""Read model files safely: the only module that opens a model file.

Formats are told by their bytes, not only their names: a ``.keras`` file is a zip archive, an ``.h5``
file starts with the HDF5 signature, a SavedModel is a directory holding ``saved_model.pb``, and an
``.onnx`` file is a protobuf that ``onnx.load`` must parse and the ONNX checker accept. Keras files are
loaded with ``safe_mode=True``, so a Lambda layer's pickled code is never run unless the caller asks.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from xverify.errors import ModelFileError

_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
KERAS_FORMATS = ("keras", "h5", "savedmodel")


@dataclass(frozen=True)
class ModelSource:
    """Where a model came from: its path, detected format and content hash."""

    path: str
    format: str  # "keras" | "h5" | "savedmodel" | "onnx"
    sha256: str


def sha256_of(path: str | os.PathLike) -> str:
    """Hash a file, or every file of a directory in sorted order (a SavedModel)."""
    digest = hashlib.sha256()
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            digest.update(str(f.relative_to(p)).encode())
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _head(path: Path, n: int = 8) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(n)


def detect_format(path: str | os.PathLike) -> str:
    """Tell a model file's format from its bytes; raise ModelFileError naming what was found."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: no such file or directory. Expected a Keras model "
                             "(.keras, .h5, SavedModel directory) or an .onnx file; check the path.")
    if p.is_dir():
        if (p / "saved_model.pb").is_file():
            return "savedmodel"
        raise ModelFileError(f"{p}: is a directory without saved_model.pb. Expected a SavedModel "
                             "directory (written by model.export()) or a model file.")
    if p.stat().st_size == 0:
        raise ModelFileError(f"{p}: the file is empty (0 bytes). Expected a Keras or ONNX model; "
                             "re-save or re-export it.")
    head = _head(p)
    suffix = p.suffix.lower()
    if head.startswith(_ZIP_MAGIC):
        if suffix not in (".keras", ".zip", ""):
            raise ModelFileError(f"{p}: is a zip archive (a .keras model?) but is named {suffix!r}; "
                                 "rename it to .keras.")
        return "keras"
    if head.startswith(_HDF5_MAGIC):
        return "h5"
    if suffix == ".onnx":
        return "onnx"
    expected = {".keras": "a .keras zip archive", ".h5": "an HDF5 file",
                ".hdf5": "an HDF5 file"}.get(suffix, "a .keras, .h5 or .onnx model")
    raise ModelFileError(f"{p}: expected {expected}, but the file starts with bytes {head!r}, "
                         "which is not a Keras or HDF5 model. Was it truncated or saved in another "
                         "format? Re-save it with model.save('model.keras').")


def load_keras(path: str | os.PathLike, *, unsafe: bool = False):
    """Load a ``.keras`` or ``.h5`` model with Keras' safe mode on (unless ``unsafe``).

    Returns:
        The Keras model (not compiled).
    """
    fmt = detect_format(path)
    if fmt not in ("keras", "h5"):
        raise ModelFileError(f"{path}: is a {fmt} model, not a Keras .keras/.h5 file.")
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=not unsafe)
    except Exception as exc:  # Keras raises many types; all mean "this file is not loadable"
        text = str(exc).lower()
        if "safe_mode" in text or "unsafe" in text:
            raise ModelFileError(
                f"{path}: holds Python code (a Lambda layer), which Keras' safe mode will not run. "
                "Pass --unsafe (unsafe=True in the library) only if you trust the file's author."
            ) from exc
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: Keras could not load this {fmt} file ({type(exc).__name__}: "
                             f"{message}). Was it truncated, or written by an incompatible Keras "
                             "version? Re-save it with model.save('model.keras').") from exc


def load_onnx(path: str | os.PathLike):
    """Parse an ``.onnx`` file and run the ONNX checker on it.

    Returns:
        The ``onnx.ModelProto``.
    """
    import onnx

    p = Path(path)
    detect_format(p)
    try:
        model = onnx.load(str(p))
    except Exception as exc:
        raise ModelFileError(f"{p}: is not a readable ONNX model ({type(exc).__name__}: {exc}). "
                             "Expected a protobuf ModelProto; was the file truncated? Re-export it "
                             "with `xverify convert`.") from exc
    if not model.graph.node and not model.graph.output:
        raise ModelFileError(f"{p}: parsed as ONNX but holds no graph (no nodes, no outputs). "
                             "Expected an exported model; was the file truncated or not ONNX?")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelFileError(f"{p}: the ONNX checker rejects this model ({first}). "
                             "Re-export it with `xverify convert`.") from exc
    return model


def open_model(path: str | os.PathLike, *, unsafe: bool = False):
    """Load any supported model file.

    Returns:
        ``(model, source)`` where model is a Keras model, a SavedModel handle or an ``onnx.ModelProto``.
    """
    fmt = detect_format(path)
    source = ModelSource(str(path), fmt, sha256_of(path))
    if fmt == "onnx":
        return load_onnx(path), source
    if fmt == "savedmodel":
        return load_savedmodel(path), source
    return load_keras(path, unsafe=unsafe), source


def load_savedmodel(path: str | os.PathLike):
    """Load a SavedModel directory written by ``model.export()`` (runs no Python from the file)."""
    import tensorflow as tf

    try:
        return tf.saved_model.load(str(path))
    except Exception as exc:
        raise ModelFileError(f"{path}: TensorFlow could not load this SavedModel "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0]}). Expected a "
                             "directory written by model.export().") from exc
