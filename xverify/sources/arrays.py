"""NumPy files read in chunks: ``.npy`` memory-mapped, ``.npz`` members streamed, shard folders.

No file is unpickled: an object array is refused from its header.
"""

from __future__ import annotations

import math
import mmap
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from xverify.errors import InputDataError
from xverify.sources import Source, only_input, sample_bytes


def npy(path: Path, specs) -> Source:
    """One input from a memory-mapped ``.npy``: only the rows of a chunk are read."""
    spec = only_input(specs, path, "a .npy file")
    mapped, array, offset = _mmap(path)
    row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))

    def read(batch):
        for start in range(0, len(array), batch):
            rows = np.array(array[start : start + batch])  # a copy: the runtimes never see the map
            if array.flags.c_contiguous:
                _release(mapped, offset + start * row_bytes, len(rows) * row_bytes)
            yield {spec.name: rows}

    return Source(path, tuple(specs), len(array), sample_bytes(specs, {spec.name: array.shape[1:]}), read)


def _mmap(path: Path) -> tuple[mmap.mmap, np.ndarray, int]:
    """The file mapped read-only and the array over it (np.load(mmap_mode="r") without np.memmap,
    so the pages a chunk was read from can be handed back)."""
    try:
        with open(path, "rb") as handle:
            shape, fortran, dtype = _header(handle)
            offset = handle.tell()
            if not shape:
                raise InputDataError(f"{path}: holds a scalar; expected an array with samples along axis 0.")
            if handle.seek(0, 2) < offset + dtype.itemsize * math.prod(shape):
                raise ValueError(f"the file is shorter than its header's shape {shape} {dtype} declares")
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        array = np.ndarray(shape, dtype, buffer=mapped, offset=offset, order="F" if fortran else "C")
    except (ValueError, OSError, EOFError) as exc:
        raise InputDataError(
            f"{path}: cannot map it as a NumPy array ({exc}). Save plain numeric arrays with np.save."
        ) from exc
    return mapped, array, offset


def _release(mapped: mmap.mmap, start: int, length: int) -> None:
    """Drop the pages of rows already copied from the process (the kernel's page cache keeps
    them): without it a map's resident size grows with the file as it is read."""
    if hasattr(mapped, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        aligned = start - start % mmap.PAGESIZE
        mapped.madvise(mmap.MADV_DONTNEED, aligned, start + length - aligned)


def npz(path: Path, specs) -> Source:
    """Every member of an ``.npz`` streamed from the archive, one row range at a time."""
    headers = _npz_headers(path)
    names = [s.name for s in specs]
    if sorted(headers) != sorted(names):
        raise InputDataError(
            f"{path}: arrays {sorted(headers)} do not fit the model, which expects {names}. "
            "Save one array per input name (np.savez(path, **{name: array}))."
        )
    counts = {name: shape[0] if shape else 0 for name, (shape, _, _) in headers.items()}
    if len(set(counts.values())) > 1:
        raise InputDataError(f"{path}: arrays hold different sample counts {counts}; expected equal counts.")

    def read(batch):
        try:
            with zipfile.ZipFile(path) as archive:
                streams = {name: _MemberRows(archive, name + ".npy", headers[name]) for name in names}
                for start in range(0, counts[names[0]], batch):
                    yield {name: stream.rows(start, batch) for name, stream in streams.items()}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise InputDataError(
                f"{path}: cannot read its arrays ({type(exc).__name__}: {exc}); the file may be "
                "truncated or damaged. Save it again with np.savez."
            ) from exc

    shapes = {name: shape[1:] for name, (shape, _, _) in headers.items()}
    return Source(path, tuple(specs), counts[names[0]], sample_bytes(specs, shapes), read)


def _npz_headers(path: Path) -> dict[str, tuple]:
    """Each member's (shape, fortran_order, dtype), read without the data."""
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {}
            for info in archive.infolist():
                with archive.open(info) as member:
                    headers[info.filename.removesuffix(".npy")] = _header(member)
            return headers
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputDataError(
            f"{path}: cannot read it as .npz ({type(exc).__name__}: {exc}). Save it with np.savez."
        ) from exc


def _header(stream) -> tuple:
    version = npy_format.read_magic(stream)
    reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    shape, fortran, dtype = reader(stream)
    if dtype.hasobject:
        raise ValueError("it holds Python objects (pickled), which xverify never loads")
    return shape, fortran, dtype


class _MemberRows:
    """Rows of one ``.npz`` member read in order from its (possibly compressed) stream."""

    def __init__(self, archive: zipfile.ZipFile, member: str, header: tuple):
        self.shape, fortran, self.dtype = header
        self.stream = archive.open(member)
        _header(self.stream)
        self.whole = npy_format.read_array(archive.open(member)) if fortran else None  # column-major: no rows
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def rows(self, start: int, count: int) -> np.ndarray:
        if self.whole is not None:
            return np.ascontiguousarray(self.whole[start : start + count])
        count = min(count, self.shape[0] - start)
        data = self.stream.read(count * self.row_bytes)
        if len(data) != count * self.row_bytes:
            raise EOFError(f"member ends after {len(data)} of {count * self.row_bytes} bytes")
        return np.frombuffer(data, self.dtype, count=len(data) // max(self.dtype.itemsize, 1)).reshape(
            count, *self.shape[1:]
        )


def shards(folder: Path, files: list[Path], specs) -> Source:
    """``.npy``/``.npz`` shards in sorted name order, as one data set."""
    parts = [npy(f, specs) if f.suffix.lower() == ".npy" else npz(f, specs) for f in files]
    first = parts[0]
    for part in parts[1:]:
        if part.bytes_per_sample != first.bytes_per_sample or _sample_shapes(part) != _sample_shapes(first):
            raise InputDataError(
                f"{part.path}: samples of shape {_sample_shapes(part)}, but the first shard "
                f"{first.path.name} holds {_sample_shapes(first)}. Every shard of {folder} must "
                "hold samples of one shape."
            )

    def read(batch):
        for part in parts:
            yield from part.read(batch)

    total = sum(p.samples or 0 for p in parts)  # an .npy/.npz header gives every shard's size
    return Source(folder, tuple(specs), total, first.bytes_per_sample, read)


def _sample_shapes(source: Source) -> dict:
    """Each input's per-sample shape, from the first rows (cheap: a map or a header)."""
    chunk = next(source.read(1), None)
    return {name: array.shape[1:] for name, array in (chunk or {}).items()}
