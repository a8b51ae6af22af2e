"""Input sources read in chunks: memory bounded by the chunk, not by the data set (issue 12).

``open_source(path, specs)`` picks a reader from what ``path`` is, and ``Source.chunks(batch)``
yields dicts {input name: array} of ``batch`` samples (the last one shorter), each checked and
cast by ``inputs.fit_inputs`` exactly as a whole ``--inputs`` file is:

========================  =====================================================================
``x.npy``                 memory-mapped; chunks are copies of row ranges (one input)
``x.npz``                 each member streamed from the archive (compressed or not), one per input
directory of .npy/.npz    shards in sorted name order, chunks running across shard boundaries
directory of .jpg/.png    images in sorted path order (subfolders included), decoded by Pillow,
                          resized to the model's H, W, channels last, float32 0..255, then
                          ``preprocess`` (extra ``images``)
``x.parquet`` / ``x.csv`` PyArrow's batch readers (extra ``tables``); see ``tables.py`` for columns
========================  =====================================================================

Every problem with the data is an ``InputDataError`` (exit 2) naming the file.

Example::

    source = open_source("val_images/", input_specs(onnx_model))
    for feeds in source.chunks(batch=32):
        ...
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xverify.errors import InputDataError, MissingDependencyError
from xverify.inputs import InputSpec, fit_inputs

Chunk = dict[str, np.ndarray]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ARRAY_SUFFIXES = (".npy", ".npz")
TABLE_SUFFIXES = (".parquet", ".pq", ".csv")


@dataclass(frozen=True)
class Source:
    """A data set read chunk by chunk; ``samples`` is its size when known before reading."""

    path: Path
    specs: tuple[InputSpec, ...]
    samples: int | None
    bytes_per_sample: int | None  # after the cast to the model's dtypes, when known
    read: Callable[[int], Iterator[Chunk]]  # batch -> raw chunks of at most batch rows

    def chunks(self, batch: int = 16, limit: int | None = None) -> Iterator[Chunk]:
        """Chunks of ``batch`` samples (the last shorter), at most ``limit`` samples in all."""
        if batch < 1:
            raise ValueError(f"batch {batch}: expected a positive number of samples")
        start = 0
        for raw in rebatch(self.read(batch), batch):
            rows = len(next(iter(raw.values())))
            if limit is not None and start + rows > limit:
                raw = {name: array[: limit - start] for name, array in raw.items()}
                rows = limit - start
            if rows:
                yield fit_inputs(raw, list(self.specs), f"{self.path} (samples {start}..{start + rows - 1})")
            start += rows
            if limit is not None and start >= limit:
                return


def open_source(
    path: str | Path, specs: list[InputSpec], preprocess: Callable[[np.ndarray], np.ndarray] | None = None
) -> Source:
    """The reader for ``path``; raises InputDataError when it is none of the kinds above."""
    from xverify.sources import arrays, images, tables

    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        shards = [f for f in files if f.parent == p and f.suffix.lower() in ARRAY_SUFFIXES]
        pictures = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
        if shards and not pictures:
            return arrays.shards(p, shards, specs)
        if pictures and not shards:
            return images.folder(p, pictures, specs, preprocess)
        found = "both .npy/.npz shards and images" if shards else "no .npy, .npz, .jpg or .png file"
        raise InputDataError(
            f"{p}: expected a folder of .npy/.npz shards or of .jpg/.png images, found {found}. "
            "Keep one kind of file in the folder."
        )
    if not p.is_file():
        raise InputDataError(
            f"{p}: no such inputs file or folder. Expected .npz, .npy, .parquet, .csv, a folder of "
            ".npy/.npz shards or a folder of images."
        )
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return arrays.npy(p, specs)
    if suffix == ".npz":
        return arrays.npz(p, specs)
    if suffix in TABLE_SUFFIXES:
        return tables.table(p, specs)
    raise InputDataError(
        f"{p}: unknown inputs format {suffix!r}; expected .npz, .npy, .parquet, .csv or a folder."
    )


def rebatch(chunks: Iterator[Chunk], batch: int) -> Iterator[Chunk]:
    """Regroup chunks of any sizes into chunks of exactly ``batch`` rows (the last shorter)."""
    pending: list[Chunk] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(next(iter(chunk.values())))
        while held >= batch:
            joined = _join(pending)
            yield {k: v[:batch] for k, v in joined.items()}
            rest = {k: v[batch:] for k, v in joined.items()}
            held -= batch
            pending = [rest] if held else []
    if held:
        yield _join(pending)


def _join(chunks: list[Chunk]) -> Chunk:
    if len(chunks) == 1:
        return chunks[0]
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def require(module: str, package: str, extra: str, what: str):
    """Import an optional dependency, or say which pip command brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs {package}, which is not installed: pip install 'xverify[{extra}]'."
        ) from exc


def only_input(specs: list[InputSpec], path: Path, what: str) -> InputSpec:
    if len(specs) != 1:
        raise InputDataError(
            f"{path}: {what} holds one input, but the model has {len(specs)} inputs "
            f"{[s.name for s in specs]}; use .npz files with one array per input name."
        )
    return specs[0]


def sample_bytes(specs, shapes: dict[str, tuple]) -> int:
    """Bytes of one sample after the cast to the model's dtypes."""
    return sum(int(np.prod(shapes[s.name], dtype=np.int64)) * np.dtype(s.dtype).itemsize for s in specs)
