"""Read model files safely: the only module that opens a model file.

Formats are told by their bytes, not only their names: a ``.keras`` file is a zip archive, an ``.h5``
file starts with the HDF5 signature, a SavedModel is a directory holding ``saved_model.pb``, and an
``.onnx`` file is a protobuf that ``onnx.load`` must parse and the ONNX checker accept. Keras files are
loaded with ``safe_mode=True``, so a Lambda layer's pickled code is never run unless the caller asks.

What a file declares is checked against the memory budget (``budget.py``) before it is read: a
``.keras`` archive's members by their declared sizes and compression ratios (nothing is
decompressed first), an ``.h5`` file's datasets by their shapes, an ``.onnx`` file by its size and
each initializer's declared shape against the bytes it holds.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xverify.budget import Budget, human, tensor_bytes
from xverify.errors import MissingDependencyError, ModelFileError

KERAS_EXTRA = "pip install 'xverify[keras]'"

if TYPE_CHECKING:
    import numpy as np
    import onnx

StrPath = str | os.PathLike[str]  # a path as users give it

_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
KERAS_FORMATS = ("keras", "h5", "savedmodel")
# Keras writes its archive members stored (ratio 1); deflate cannot exceed ~1032:1. A large member
# inflating more than this is a bomb (Keras' own guard uses 100x, but only above 4 GiB).
_MAX_RATIO = 100
_RATIO_FLOOR = 64 * 2**20  # members smaller than this are too small to matter whatever their ratio
_MAX_JSON = 64 * 2**20  # config.json / metadata.json: a real one is kilobytes to a few megabytes


@dataclass(frozen=True)
class ModelSource:
    """Where a model came from: its path, detected format and content hash."""

    path: str
    format: str  # "keras" | "h5" | "savedmodel" | "onnx"
    sha256: str


def sha256_of(path: StrPath) -> str:
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


def detect_format(path: StrPath) -> str:
    """Tell a model file's format from its bytes; raise ModelFileError naming what was found."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(
            f"{p}: no such file or directory. Expected a Keras model "
            "(.keras, .h5, SavedModel directory) or an .onnx file; check the path."
        )
    if p.is_dir():
        if (p / "saved_model.pb").is_file():
            return "savedmodel"
        raise ModelFileError(
            f"{p}: is a directory without saved_model.pb. Expected a SavedModel "
            "directory (written by model.export()) or a model file."
        )
    if p.stat().st_size == 0:
        raise ModelFileError(
            f"{p}: the file is empty (0 bytes). Expected a Keras or ONNX model; re-save or re-export it."
        )
    head = _head(p)
    suffix = p.suffix.lower()
    if head.startswith(_ZIP_MAGIC):
        if suffix not in (".keras", ".zip", ""):
            raise ModelFileError(
                f"{p}: is a zip archive (a .keras model?) but is named {suffix!r}; rename it to .keras."
            )
        return "keras"
    if head.startswith(_HDF5_MAGIC):
        return "h5"
    if suffix == ".onnx":
        return "onnx"
    expected = {".keras": "a .keras zip archive", ".h5": "an HDF5 file", ".hdf5": "an HDF5 file"}.get(
        suffix, "a .keras, .h5 or .onnx model"
    )
    raise ModelFileError(
        f"{p}: expected {expected}, but the file starts with bytes {head!r}, "
        "which is not a Keras or HDF5 model. Was it truncated or saved in another "
        "format? Re-save it with model.save('model.keras')."
    )


def check_keras_archive(path: Path, budget: Budget) -> None:
    """Refuse a ``.keras`` zip whose members declare more than the budget, a config larger than any
    real one, or a large member inflating more than ``_MAX_RATIO`` times: read from the zip's
    directory, before anything is decompressed."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: is not a readable .keras archive ({exc}). Was it truncated? "
            "Re-save it with model.save('model.keras')."
        ) from exc
    what = "Re-save the model with model.save('model.keras'); do not load files of unknown origin."
    for info in members:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.filename.endswith(".json") and info.file_size > _MAX_JSON:
            raise ModelFileError(
                f"{path}: member {info.filename!r} declares {human(info.file_size)}, "
                f"but a Keras model's JSON is at most a few MiB. {what}"
            )
        if info.file_size > _RATIO_FLOOR and ratio > _MAX_RATIO:
            raise ModelFileError(
                f"{path}: member {info.filename!r} would inflate from "
                f"{human(info.compress_size)} to {human(info.file_size)} "
                f"({ratio:.0f}x; Keras stores members uncompressed), a "
                f"decompression bomb. {what}"
            )
    total = sum(float(info.file_size) for info in members)
    budget.require(
        total,
        f"{path}: the archive's members (declared sizes)",
        "Raise --max-memory if the machine has the memory and the file is trusted.",
    )


def check_h5(path: Path, budget: Budget) -> None:
    """Refuse an ``.h5`` file whose datasets declare more than the budget (read from its headers)."""
    try:
        import h5py
    except ImportError:
        return  # Keras needs h5py to read the file at all and says so itself
    total = 0.0

    def visit(_: str, item: Any) -> None:
        nonlocal total
        if isinstance(item, h5py.Dataset):
            total += tensor_bytes(item.shape or (), item.dtype.itemsize)

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(visit)
    except Exception as exc:  # h5py raises OSError, KeyError, RuntimeError on damaged files
        raise ModelFileError(
            f"{path}: is not a readable HDF5 file ({type(exc).__name__}: {exc}). "
            "Was it truncated? Re-save it with model.save('model.keras')."
        ) from exc
    budget.require(
        total,
        f"{path}: the datasets it declares",
        "Raise --max-memory if the machine has the memory and the file is trusted.",
    )


def load_keras(path: StrPath, *, unsafe: bool = False, budget: Budget | None = None) -> Any:
    """Load a ``.keras`` or ``.h5`` model with Keras' safe mode on (unless ``unsafe``).

    Returns:
        The Keras model (not compiled).
    """
    fmt = detect_format(path)
    if fmt not in ("keras", "h5"):
        raise ModelFileError(f"{path}: is a {fmt} model, not a Keras .keras/.h5 file.")
    budget = budget or Budget.default()
    (check_keras_archive if fmt == "keras" else check_h5)(Path(path), budget)
    require_tensorflow(path)
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
        raise ModelFileError(
            f"{path}: Keras could not load this {fmt} file ({type(exc).__name__}: "
            f"{message}). Was it truncated, or written by an incompatible Keras "
            "version? Re-save it with model.save('model.keras')."
        ) from exc


def load_onnx(path: StrPath, budget: Budget | None = None) -> onnx.ModelProto:
    """Parse an ``.onnx`` file and run the ONNX checker on it.

    Returns:
        The ``onnx.ModelProto``.
    """
    import onnx

    p = Path(path)
    detect_format(p)
    # parsing holds the file's bytes and the parsed message at once
    (budget or Budget.default()).require(
        2.0 * p.stat().st_size,
        f"{p}: parsing this ONNX file",
        "Raise --max-memory if the machine has the memory.",
    )
    try:
        model = onnx.load(str(p))
    except Exception as exc:
        raise ModelFileError(
            f"{p}: is not a readable ONNX model ({type(exc).__name__}: {exc}). "
            "Expected a protobuf ModelProto; was the file truncated? Re-export it "
            "with `xverify convert`."
        ) from exc
    if not model.graph.node and not model.graph.output:
        raise ModelFileError(
            f"{p}: parsed as ONNX but holds no graph (no nodes, no outputs). "
            "Expected an exported model; was the file truncated or not ONNX?"
        )
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelFileError(
            f"{p}: the ONNX checker rejects this model ({first}). Re-export it with `xverify convert`."
        ) from exc
    check_initializers(model, str(p))
    return model


_PLAIN_TYPES: dict[int, tuple[np.dtype[Any], str]] = {}


def check_initializers(model: onnx.ModelProto, origin: str) -> None:
    """Every initializer holds the bytes its shape declares, and no float weight holds NaN.

    The ONNX checker leaves both to the runtimes, where a short tensor ends in a reshape error deep
    in a kernel and NaN weights make every output NaN on every side (a check that shows nothing).
    """
    import numpy as np

    _PLAIN_TYPES or _PLAIN_TYPES.update(_plain_types())
    for init in model.graph.initializer:
        plain = _PLAIN_TYPES.get(init.data_type)
        if plain is None or init.data_location == 1:  # packed, string or external tensors: onnx's
            continue
        dtype, field = plain
        count = len(init.raw_data) // dtype.itemsize if init.raw_data else len(getattr(init, field))
        declared = tensor_bytes(init.dims, 1)
        if count != declared:
            raise ModelFileError(
                f"{origin}: initializer {init.name!r} declares shape "
                f"{tuple(init.dims)} ({declared:.0f} values) but holds {count}. "
                "The file is damaged or hand-edited; re-export it."
            )
        if dtype.kind == "f" and init.raw_data and np.isnan(np.frombuffer(init.raw_data, dtype)).any():
            raise ModelFileError(
                f"{origin}: initializer {init.name!r} (shape {tuple(init.dims)}) holds NaN; "
                "every output it reaches is NaN on every runtime, so no comparison can show "
                "whether the conversion is right. Fix or retrain the weights first."
            )


def _plain_types() -> dict[int, tuple[np.dtype[Any], str]]:
    """ONNX element types stored one value per element -> (numpy dtype, typed storage field)."""
    import numpy as np
    from onnx import TensorProto as T

    table = {
        T.FLOAT: ("float32", "float_data"),
        T.DOUBLE: ("float64", "double_data"),
        T.INT64: ("int64", "int64_data"),
        T.UINT64: ("uint64", "uint64_data"),
        T.UINT32: ("uint32", "uint64_data"),
        T.INT32: ("int32", "int32_data"),
        T.FLOAT16: ("float16", "int32_data"),
        T.INT16: ("int16", "int32_data"),
        T.UINT16: ("uint16", "int32_data"),
        T.INT8: ("int8", "int32_data"),
        T.UINT8: ("uint8", "int32_data"),
        T.BOOL: ("bool", "int32_data"),
    }
    return {k: (np.dtype(d), f) for k, (d, f) in table.items()}


def open_model(
    path: StrPath, *, unsafe: bool = False, budget: Budget | None = None
) -> tuple[Any, ModelSource]:
    """Load any supported model file.

    Returns:
        ``(model, source)`` where model is a Keras model, a SavedModel handle or an ``onnx.ModelProto``.
    """
    fmt = detect_format(path)
    source = ModelSource(str(path), fmt, sha256_of(path))
    if fmt == "onnx":
        return load_onnx(path, budget), source
    if fmt == "savedmodel":
        return load_savedmodel(path), source
    return load_keras(path, unsafe=unsafe, budget=budget), source


def load_savedmodel(path: StrPath) -> Any:
    """Load a SavedModel directory written by ``model.export()`` (runs no Python from the file)."""
    require_tensorflow(path)
    import tensorflow as tf

    try:
        return tf.saved_model.load(str(path))
    except Exception as exc:
        raise ModelFileError(
            f"{path}: TensorFlow could not load this SavedModel "
            f"({type(exc).__name__}: {str(exc).splitlines()[0]}). Expected a "
            "directory written by model.export()."
        ) from exc


def require_tensorflow(path: StrPath) -> None:
    """TensorFlow, Keras and tf2onnx are the ``keras`` extra: a Keras model given without them is
    a MissingDependencyError (exit 2) saying what to install, not an ImportError traceback. An ONNX
    file, and a check against a golden bundle, need none of them."""
    import importlib.util

    def found(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or half-removed install counts as absent
            return False

    absent = [m for m in ("tensorflow", "keras", "tf2onnx") if not found(m)]
    if absent:
        raise MissingDependencyError(
            f"{path}: a Keras model needs TensorFlow, Keras and tf2onnx ({', '.join(absent)} not "
            f"installed): {KERAS_EXTRA}. An .onnx file, or `xverify check MODEL.onnx --golden "
            "BUNDLE/`, needs none of them."
        )
