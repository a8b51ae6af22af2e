"""The inputs every runtime sees: seeded synthetic data from the model's signature, or a user's file.

Synthetic floats are standard normal; an integer input that feeds an embedding (an ONNX ``Gather`` on
a constant table) gets valid indices below the table's row count. Files are read without unpickling:
``.npz`` (arrays by input name), ``.npy`` (one input) and ``.csv`` (one row per sample, one input).
A folder (``.npy``/``.npz`` shards, or images), a Parquet table and a ``.csv`` with a header row are
read through ``sources`` chunk by chunk and gathered here (the check does not stream them yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from xverify.budget import Budget, tensor_bytes
from xverify.errors import InputDataError, UsageError

DYNAMIC_DIM = 8  # size given to an unknown non-batch dimension (a sequence length, say)


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, shape (None for unknown dims), dtype and index bound if any."""

    name: str
    shape: tuple
    dtype: str
    high: int | None = None  # integer inputs: values must stay below this (vocabulary size)
    dim_names: tuple = ()  # per axis, the symbolic name (dim_param) of an unknown dim, else None

    def to_dict(self) -> dict:
        out = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if any(self.dim_names):
            out["dim_names"] = list(self.dim_names)
        return out


def input_specs(onnx_model: onnx.ModelProto) -> list[InputSpec]:
    """The graph inputs (initializers excluded) with the bound of each index input."""
    inits = {i.name for i in onnx_model.graph.initializer}
    bounds = _index_bounds(onnx_model)
    specs = []
    for value in onnx_model.graph.input:
        if value.name in inits:
            continue
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        names = tuple(d.dim_param or None for d in tensor.shape.dim)
        dtype = str(helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        specs.append(InputSpec(value.name, shape, dtype, bounds.get(value.name), names if any(names) else ()))
    return specs


def fixed_batch(specs: list[InputSpec]) -> int | None:
    """The first dimension every input fixes to the same size (an exporter's batch of 1), else None.

    A model whose inputs fix their first dimension can only be fed that many rows at a time, so
    the check runs its samples in batches of that size.
    """
    firsts = {s.shape[0] if s.shape else None for s in specs}
    return firsts.pop() if len(firsts) == 1 and None not in firsts and specs else None


def dims_note(specs: list[InputSpec], samples: int) -> str | None:
    """A sentence naming the symbolic dimensions and the sizes the synthetic inputs gave them."""
    named = [
        f"{s.name}[{axis}] = {name} ({samples if axis == 0 else DYNAMIC_DIM})"
        for s in specs
        for axis, name in enumerate(s.dim_names)
        if name and not name.startswith("unk__")
    ]  # tf2onnx's placeholders name nothing
    return "symbolic dimensions fed as: " + ", ".join(named) if named else None


def _index_bounds(onnx_model: onnx.ModelProto) -> dict[str, int]:
    """Integer graph inputs whose values reach a Gather's indices on a constant table -> its rows.

    Keras 3's Embedding wraps negative indices (Less, Where, Add) before its Gather, so ancestry is
    followed through any chain of nodes, not only Casts.
    """
    graph = onnx_model.graph
    sizes = {i.name: list(i.dims) for i in graph.initializer}
    ancestors: dict[str, set[str]] = {i.name: {i.name} for i in graph.input if i.name not in sizes}
    bounds: dict[str, int] = {}
    for node in graph.node:
        found = set().union(*(ancestors.get(name, set()) for name in node.input))
        if node.op_type == "Gather" and node.input[0] in sizes and len(node.input) > 1:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            rows = sizes[node.input[0]][axis]
            for name in ancestors.get(node.input[1], ()):
                bounds[name] = min(rows, bounds.get(name, rows))
        for out in node.output:
            ancestors[out] = found
    integer = {
        i.name
        for i in graph.input
        if helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type).kind in "iu"
    }
    return {k: v for k, v in bounds.items() if k in integer}


def synthetic(
    specs: list[InputSpec], samples: int = 16, seed: int = 0, budget: Budget | None = None
) -> dict[str, np.ndarray]:
    """Seeded random inputs: ``samples`` rows for each input of ``specs``.

    Raises:
        ResourceLimitError: the batch would not fit ``budget`` (default: a quarter of the memory).
    """
    if samples < 1:
        raise UsageError(f"--samples {samples}: expected a positive number of samples (default 16).")
    batch = fixed_batch(specs)
    if batch:  # whole batches of the model's fixed size, as many as hold ``samples`` rows
        samples = -(-samples // batch) * batch
    shapes = {
        spec.name: (samples, *[DYNAMIC_DIM if d is None else d for d in spec.shape[1:]]) for spec in specs
    }
    # standard_normal draws float64 before the cast: count that draw, the largest transient
    need = sum(tensor_bytes(shapes[s.name], np.dtype(s.dtype).itemsize) for s in specs)
    need += max((tensor_bytes(shape, 8) for shape in shapes.values()), default=0)
    largest = max(specs, key=lambda s: tensor_bytes(shapes[s.name], 1), default=None)
    if largest is not None:
        (budget or Budget.default()).require(
            need,
            f"the synthetic inputs ({samples} samples; input {largest.name!r} of shape "
            f"{shapes[largest.name]} {largest.dtype})",
            "Pass fewer --samples, raise --max-memory if the machine has the memory, or pass "
            "--inputs FILE with smaller data if the model accepts other shapes.",
        )
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = shapes[spec.name]
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, spec.high or 10, shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.random(shape) < 0.5
        else:
            raise InputDataError(
                f"input {spec.name!r} has dtype {dtype}; xverify can only make "
                "numeric or boolean synthetic inputs: pass --inputs FILE."
            )
    return feeds


def load_inputs(
    path: str | Path, specs: list[InputSpec], budget: Budget | None = None, limit: int | None = None
) -> dict[str, np.ndarray]:
    """Read inputs from ``.npz``, ``.npy``, ``.csv``, ``.parquet`` or a folder; check them against ``specs``.

    The arrays' declared sizes (``.npy`` headers, ``.npz`` members, a ``.csv``'s length, a folder's
    images) are checked against ``budget`` before anything is read. ``limit``: at most this many
    samples (a streamed source stops reading there)."""
    p = Path(path)
    if _streamed(p):
        return _load_streamed(p, specs, budget or Budget.default(), limit)
    if not p.is_file():
        raise InputDataError(
            f"{p}: no such inputs file. Expected .npz (arrays by input name), "
            ".npy (one input), .csv (one row per sample), .parquet, or a folder of .npy/.npz shards "
            "or of images."
        )
    suffix = p.suffix.lower()
    (budget or Budget.default()).require(
        _declared_bytes(p, suffix),
        f"{p}: the arrays it holds",
        "Pass fewer samples in the file, or raise --max-memory if the machine has the memory.",
    )
    try:
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
        elif suffix == ".npy":
            arrays = {_only(specs, p, "a .npy file").name: np.load(p, allow_pickle=False)}
        elif suffix == ".csv":
            spec = _only(specs, p, "a .csv file")
            table = np.loadtxt(p, delimiter=",", ndmin=2, dtype=np.float64)
            arrays = {spec.name: table}
        else:
            raise InputDataError(f"{p}: unknown inputs format {suffix!r}; expected .npz, .npy or .csv.")
    except InputDataError:
        raise
    except ValueError as exc:
        what = (
            "it holds Python objects (pickled), which xverify never loads"
            if "pickle" in str(exc).lower()
            else str(exc).splitlines()[0]
        )
        raise InputDataError(
            f"{p}: cannot read inputs: {what}. Save plain numeric arrays "
            "(np.save / np.savez, or a numeric .csv)."
        ) from exc
    except Exception as exc:
        raise InputDataError(f"{p}: cannot read inputs ({type(exc).__name__}: {exc}).") from exc
    if limit is not None:
        arrays = {name: array[:limit] for name, array in arrays.items()}
    return fit_inputs(arrays, specs, str(p))


def _streamed(path: Path) -> bool:
    """A source read through ``sources``: a folder, a Parquet table, a ``.csv`` with a header row."""
    suffix = path.suffix.lower()
    if path.is_dir() or (suffix in (".parquet", ".pq") and path.is_file()):
        return True
    if suffix != ".csv" or not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline(1 << 16).strip()
    try:
        for cell in first.split(",") if first else ():
            float(cell)
    except ValueError:
        return True  # a header names the columns (x_0, x_1, ...): a table
    return False


def _load_streamed(path: Path, specs: list[InputSpec], budget: Budget, limit: int | None) -> dict:
    """Every chunk of a streamed source gathered into one batch, within ``budget``."""
    from xverify.sources import open_source

    source = open_source(path, specs)
    rows = source.samples if limit is None or source.samples is None else min(source.samples, limit)
    if rows is not None and source.bytes_per_sample is not None:
        need = 2.0 * rows * source.bytes_per_sample  # the chunks and the batch joined from them
    else:
        need = float(path.stat().st_size) * 8  # a .csv: a float64 per value is at most 8x the text
    budget.require(
        need,
        f"{path}: {rows if rows is not None else 'the'} samples gathered in memory",
        "Pass a smaller set, or raise --max-memory if the machine has the memory.",
    )
    chunks = list(source.chunks(1024, limit))
    if not chunks:
        raise InputDataError(f"{path}: holds no samples; expected at least one.")
    return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}


def _declared_bytes(path: Path, suffix: str) -> float:
    """What reading the file would allocate, from its headers (nothing is decompressed)."""
    import zipfile

    try:
        if suffix == ".npy":
            with open(path, "rb") as handle:
                return _npy_header_bytes(handle)
        if suffix == ".npz":
            with zipfile.ZipFile(path) as archive:
                total = 0.0
                for info in archive.infolist():
                    with archive.open(info) as member:
                        total += _npy_header_bytes(member)
                return total
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputDataError(
            f"{path}: cannot read inputs ({type(exc).__name__}: {exc}). Save "
            "plain numeric arrays (np.save / np.savez)."
        ) from exc
    return float(path.stat().st_size) * 8  # a .csv: a float64 per value is at most 8x the text


def _npy_header_bytes(handle) -> float:
    """The size an ``.npy`` header declares (shape x itemsize), read without the data."""
    from numpy.lib import format as npy

    version = npy.read_magic(handle)
    reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    shape, _, dtype = reader(handle)
    return tensor_bytes(shape, dtype.itemsize)


def _only(specs, path, what) -> InputSpec:
    if len(specs) != 1:
        raise InputDataError(
            f"{path}: {what} holds one input, but the model has {len(specs)} "
            f"inputs {[s.name for s in specs]}; use an .npz with one array per name."
        )
    return specs[0]


def fit_inputs(arrays: dict[str, np.ndarray], specs: list[InputSpec], origin: str) -> dict:
    """Match arrays to the model's inputs by name and check shapes and dtypes (exit 2 if off)."""
    names = [s.name for s in specs]
    unknown = sorted(set(arrays) - set(names))
    missing = [n for n in names if n not in arrays]
    if unknown or missing:
        raise InputDataError(
            f"{origin}: input names {sorted(arrays)} do not fit the model, which "
            f"expects {names} (missing {missing}, unknown {unknown})."
        )
    feeds, batch = {}, None
    for spec in specs:
        array = np.asarray(arrays[spec.name])
        if array.dtype.kind not in "biuf":
            raise InputDataError(
                f"{origin}: input {spec.name!r} has dtype {array.dtype}; "
                f"expected numeric data of dtype {spec.dtype}."
            )
        if array.ndim == 1 and len(spec.shape) == 2 and spec.shape[1] == 1:
            array = array.reshape(-1, 1)  # a column of scalars for a one-feature input
        expected = ("N", *["?" if d is None else d for d in spec.shape[1:]])
        if array.ndim != len(spec.shape) or any(
            d is not None and d != a for d, a in zip(spec.shape[1:], array.shape[1:])
        ):
            raise InputDataError(
                f"{origin}: input {spec.name!r} has shape {array.shape}, but the "
                f"model expects {tuple(expected)} (N samples)."
            )
        feeds[spec.name] = _cast(array, spec, origin)
        if batch is not None and array.shape[0] != batch:
            raise InputDataError(
                f"{origin}: inputs have different sample counts "
                f"({batch} and {array.shape[0]} for {spec.name!r})."
            )
        batch = array.shape[0]
    if not batch:
        raise InputDataError(f"{origin}: the inputs hold no samples (0 rows).")
    return feeds


def _cast(array: np.ndarray, spec: InputSpec, origin: str) -> np.ndarray:
    dtype = np.dtype(spec.dtype)
    whole = dtype.kind not in "iu" or array.dtype.kind != "f"
    if not whole and (not np.all(np.isfinite(array)) or not np.all(array == np.round(array))):
        raise InputDataError(
            f"{origin}: input {spec.name!r} expects integers ({dtype}) but holds non-integer values."
        )
    if spec.high is not None and array.size and (array.min() < 0 or array.max() >= spec.high):
        raise InputDataError(
            f"{origin}: input {spec.name!r} holds indices from {array.min()} to "
            f"{array.max()}, but the embedding has {spec.high} rows (0..{spec.high - 1})."
        )
    return array.astype(dtype, copy=False)
