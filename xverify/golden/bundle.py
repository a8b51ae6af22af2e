"""A golden bundle on disk: a manifest (JSON, with a format version) and the arrays it lists.

Every file a manifest lists carries its sha256, checked on read: a bundle that was edited,
truncated or half-copied is refused (ModelFileError, exit 2) before any number in it is believed.
Arrays are ``.npz`` archives read without unpickling; each tensor is stored under a plain key
(``t0``, ``t1``, ...) and the manifest maps it to its name, so layer and tensor names never have to
be valid archive member names.

Layout::

    BUNDLE/manifest.json        format, provenance, tolerances, the tensors of every file
    BUNDLE/model.onnx           the ONNX model the bundle was made with
    BUNDLE/inputs.npz           the inputs
    BUNDLE/outputs/<runtime>.npz   each runtime's outputs (tensorflow, onnxruntime, ...)
    BUNDLE/layers/tensorflow.npz   the Keras layers' outputs (TensorFlow), within --max-size
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from xverify.errors import ModelFileError, UsageError

FORMAT = "xverify.golden/1"
MANIFEST = "manifest.json"
_REBUILD = "rebuild it with `xverify snapshot MODEL -o BUNDLE/`"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def refuse_target(directory: Path, inputs, force: bool) -> None:
    """Refuse ``directory`` as a bundle's place when it holds files (unless ``force``), and always
    when one of ``inputs`` (the model, ONNX or inputs file) lives inside it. Checked before any
    work; the directory is made only when the bundle is written."""
    directory = Path(directory)
    root = os.path.realpath(directory)
    for source in (p for p in inputs if p):
        if os.path.commonpath([root, os.path.realpath(source)]) == root:
            raise UsageError(
                f"{directory}: holds the input {source}; a bundle is never written where its inputs "
                "live. Choose another -o directory."
            )
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: exists and is not a directory; choose another -o directory.")
    if directory.exists() and any(directory.iterdir()) and not force:
        raise UsageError(
            f"{directory}: is not empty; choose an empty or new directory, or pass --force to "
            "write the bundle's files over the ones there."
        )


def save_arrays(directory: Path, relative: str, arrays: dict[str, np.ndarray]) -> dict:
    """Write ``arrays`` as one ``.npz`` and return its manifest entry (file, sha256, tensors)."""
    path = Path(directory) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = {f"t{i}": (name, np.asarray(value)) for i, (name, value) in enumerate(arrays.items())}
    with open(path, "wb") as handle:
        # numpy's stub types savez(**kwds) beside a bool allow_pickle, so a dict of arrays reads as both
        np.savez(handle, **{key: value for key, (_, value) in keys.items()})  # type: ignore[arg-type]
    tensors = [
        {"name": name, "key": key, "shape": list(value.shape), "dtype": str(value.dtype)}
        for key, (name, value) in keys.items()
    ]
    return {"file": relative, "sha256": sha256_file(path), "tensors": tensors}


def write_manifest(directory: Path, manifest: dict) -> Path:
    path = Path(directory) / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    return path


class Bundle:
    """A bundle read from disk and verified: its manifest, and its arrays loaded on demand.

    Example::

        bundle = Bundle.open("golden/")
        feeds = bundle.arrays(bundle.manifest["inputs"])
    """

    def __init__(self, directory: Path, manifest: dict):
        self.directory = Path(directory)
        self.manifest = manifest

    @classmethod
    def open(cls, directory) -> Bundle:
        """Read and verify a bundle: format, every listed file present with its recorded sha256.

        Raises:
            ModelFileError: not a bundle, an unknown format, a missing or altered file.
        """
        directory = Path(directory)
        path = directory / MANIFEST
        if not path.is_file():
            raise ModelFileError(
                f"{directory}: expected a golden bundle directory holding {MANIFEST}, found "
                f"{'no such directory' if not directory.exists() else 'no ' + MANIFEST}; {_REBUILD}."
            )
        try:
            manifest = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"{path}: is not readable JSON ({exc}); {_REBUILD}.") from exc
        found = manifest.get("format") if isinstance(manifest, dict) else None
        if found != FORMAT:
            raise ModelFileError(
                f"{path}: bundle format {found!r}, expected {FORMAT!r} (this xverify reads that "
                f"format only); {_REBUILD} with this version of xverify."
            )
        bundle = cls(directory, manifest)
        try:
            entries = bundle.files()
            names = [(e["file"], e["sha256"], e["tensors"]) for e in entries]
        except (KeyError, TypeError) as exc:
            raise ModelFileError(f"{path}: the manifest lacks an entry ({exc}); {_REBUILD}.") from exc
        if any(Path(file).is_absolute() or ".." in Path(file).parts for file, _, _ in names):
            raise ModelFileError(f"{path}: lists a file outside the bundle directory; {_REBUILD}.")
        for entry in entries:
            bundle._verify(entry)
        return bundle

    def files(self) -> list[dict]:
        """Every file entry of the manifest (the model, inputs, outputs, layers)."""
        m = self.manifest
        entries = [m["onnx"], m["inputs"], *m["outputs"].values()]
        return entries + ([m["layers"]] if m.get("layers") and m["layers"].get("file") else [])

    def _verify(self, entry: dict) -> None:
        path = self.directory / entry["file"]
        if not path.is_file():
            raise ModelFileError(
                f"{self.directory}: the manifest lists {entry['file']}, which is missing; the "
                f"bundle is incomplete: copy it whole, or {_REBUILD}."
            )
        found = sha256_file(path)
        if found != entry["sha256"]:
            raise ModelFileError(
                f"{path}: sha256 {found[:12]}…, but the manifest records {entry['sha256'][:12]}…: "
                f"the file was altered or corrupted after the bundle was made; {_REBUILD}."
            )

    def arrays(self, entry: dict) -> dict[str, np.ndarray]:
        """The tensors of one file entry, by name, checked against the shapes the manifest lists."""
        path = self.directory / entry["file"]
        try:
            with np.load(path, allow_pickle=False) as archive:
                out = {t["name"]: archive[t["key"]] for t in entry["tensors"]}
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFileError(
                f"{path}: cannot be read as the manifest describes it ({exc}); {_REBUILD}."
            ) from exc
        for t in entry["tensors"]:
            if list(out[t["name"]].shape) != t["shape"]:
                raise ModelFileError(
                    f"{path}: tensor {t['name']!r} has shape {list(out[t['name']].shape)}, the "
                    f"manifest says {t['shape']}; {_REBUILD}."
                )
        return out
