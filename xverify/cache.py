"""Cache of converted models, so re-checking an unchanged model skips tf2onnx (25 s for ResNet50).

An entry is keyed by the model file's SHA-256, the versions of xverify, tf2onnx, TensorFlow and Keras,
the conversion revision (``convert.CONVERSION_REVISION``) and the opset. It is stored as ``<key>.onnx`` beside ``<key>.sha256`` (the digest of the ONNX bytes) and written
atomically; an entry whose bytes do not match their digest, or that onnx cannot parse, is rebuilt,
never trusted. The directory is ``$XVERIFY_CACHE_DIR`` or the user's cache directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

    from xverify.load import ModelSource


def cache_dir() -> Path:
    """Where converted models are kept."""
    env = os.environ.get("XVERIFY_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("xverify"))


def cache_key(model_sha256: str, opset: int) -> str:
    """The entry name for a model hash and opset under the installed converter versions."""
    import importlib.metadata as md

    import xverify
    from xverify.convert import CONVERSION_REVISION

    parts = [model_sha256, f"opset{opset}", f"xverify{xverify.__version__}", f"revision{CONVERSION_REVISION}"]
    for dist in ("tf2onnx", "tensorflow-cpu", "tensorflow", "keras"):
        with contextlib.suppress(md.PackageNotFoundError):
            parts.append(f"{dist}{md.version(dist)}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _read(path: Path, digest_path: Path):
    import onnx

    try:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest_path.read_text().strip():
            return None
        return onnx.load_from_string(data)
    except Exception:  # unreadable or unparsable: rebuild
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def cached_convert(
    converter: Callable[[], onnx.ModelProto], source: ModelSource, opset: int | None = None
) -> tuple[onnx.ModelProto, bool]:
    """Run ``converter()`` (a conversion of the model loaded from ``source``) or reuse a verified
    cache entry.

    Returns:
        ``(onnx_model, hit)`` where ``hit`` says the cache was used.
    """
    from xverify.convert import check_opset

    opset = check_opset(opset)
    key = cache_key(source.sha256, opset)
    path, digest_path = cache_dir() / f"{key}.onnx", cache_dir() / f"{key}.sha256"
    if path.exists() and digest_path.exists():
        model = _read(path, digest_path)
        if model is not None:
            return model, True
    model = converter()
    from xverify.convert import PROTOBUF_LIMIT

    if model.ByteSize() > PROTOBUF_LIMIT:  # cannot be one protobuf file: not cached
        return model, False
    data = model.SerializeToString()
    try:
        _write_atomic(path, data)
        _write_atomic(digest_path, hashlib.sha256(data).hexdigest().encode())
    except OSError:
        pass  # a read-only cache directory must not fail the check
    return model, False
