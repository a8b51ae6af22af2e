"""Parquet and CSV tables read through PyArrow's batch readers (extra ``tables``).

Columns are named after the model's inputs. An input takes, in this order of preference:

* the column named exactly as the input: a number per row for an input of one value per sample
  ((N,) or (N, 1)), or a list / fixed-size list per row holding the sample flattened in C order
  (Parquet; reshaped to the input's shape);
* columns ``NAME_0`` .. ``NAME_{k-1}``, the k values of the sample flattened in C order (the way a
  CSV, which has no lists, holds a vector: ``x_0,x_1,x_2``).

Other columns are ignored. An empty cell is an error naming its column and row; a NaN where the
model wants integers is refused when the chunk is cast (``inputs.fit_inputs``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xverify.errors import InputDataError
from xverify.sources import Source, require, sample_bytes


def table(path: Path, specs) -> Source:
    """A ``.parquet`` (row groups read batch by batch) or ``.csv`` (blocks) as a data set."""
    kind = "Parquet" if path.suffix.lower() != ".csv" else "CSV"
    require("pyarrow", "PyArrow", "tables", f"{path}: reading a {kind} table")
    for spec in specs:
        if None in spec.shape[1:]:
            raise InputDataError(
                f"{path}: input {spec.name!r} has shape {spec.shape} with an unknown dimension; a "
                "table holds fixed shapes only. Save the inputs as .npz instead."
            )
    reader = _open(path, kind)
    schema = reader.schema_arrow if kind == "Parquet" else reader.schema  # Parquet's own schema lists leaves
    columns = {spec.name: _columns(spec, schema.names, path) for spec in specs}
    shapes = {spec.name: tuple(spec.shape[1:]) for spec in specs}

    def read(batch):
        start = 0
        for record_batch in _batches(_open(path, kind), batch, path):
            yield {
                spec.name: _values(record_batch, columns[spec.name], shapes[spec.name], path, start)
                for spec in specs
            }
            start += record_batch.num_rows

    rows = reader.metadata.num_rows if kind == "Parquet" else None
    return Source(path, tuple(specs), rows, sample_bytes(specs, shapes), read)


def _open(path: Path, kind: str):
    import pyarrow as pa

    try:
        if kind == "Parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path)
        import pyarrow.csv as pcsv

        # only an empty cell is missing: 'nan' stays a float NaN (and is refused for integers)
        return pcsv.open_csv(path, convert_options=pcsv.ConvertOptions(null_values=[""]))
    except (pa.ArrowException, OSError) as exc:
        raise InputDataError(f"{path}: cannot read it as a {kind} table ({exc}).") from exc


def _batches(reader, batch: int, path: Path):
    import pyarrow as pa

    batches = reader.iter_batches(batch_size=batch) if hasattr(reader, "iter_batches") else reader
    try:
        for record_batch in batches:
            if record_batch.num_rows:
                yield record_batch
    except (pa.ArrowException, OSError) as exc:
        raise InputDataError(f"{path}: cannot read the table past some rows ({exc}).") from exc


def _columns(spec, names: list[str], path: Path) -> str | list[str]:
    """The column holding the input, or its ``NAME_i`` columns (see the module docstring)."""
    if spec.name in names:
        return spec.name
    size = int(np.prod(spec.shape[1:], dtype=np.int64))
    split = [f"{spec.name}_{i}" for i in range(size)]
    if all(c in names for c in split):
        return split
    shown = names if len(names) <= 12 else [*names[:12], "..."]
    raise InputDataError(
        f"{path}: no column for input {spec.name!r} (shape {spec.shape}); expected a column "
        f"{spec.name!r} or the {size} columns {split[0]}..{split[-1]}, found {shown}. Name the "
        "columns after the model's inputs."
    )


def _values(record_batch, column, shape: tuple, path: Path, start: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    size = int(np.prod(shape, dtype=np.int64))
    rows = record_batch.num_rows
    names = [column] if isinstance(column, str) else column
    arrays = [record_batch.column(name) for name in names]
    for name, array in zip(names, arrays):
        if array.null_count:
            row = start + int(np.flatnonzero(pc.is_null(array).to_numpy(zero_copy_only=False))[0])
            raise InputDataError(f"{path}: column {name!r} is empty at row {row}; fill every cell.")
    if isinstance(column, list):
        return np.stack([a.to_numpy(zero_copy_only=False) for a in arrays], axis=1).reshape(rows, *shape)
    array = arrays[0]
    if pa.types.is_list(array.type) or pa.types.is_fixed_size_list(array.type):
        lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
        if (lengths != size).any():
            row = int(np.flatnonzero(lengths != size)[0])
            raise InputDataError(
                f"{path}: column {column!r} holds {lengths[row]} values at row {start + row}; the "
                f"input's samples of shape {shape} need {size}."
            )
        return array.flatten().to_numpy(zero_copy_only=False).reshape(rows, *shape)
    if size != 1:
        raise InputDataError(
            f"{path}: column {column!r} holds one value per row, but the input's samples have shape "
            f"{shape}; store a list per row or columns {column}_0..{column}_{size - 1}."
        )
    return array.to_numpy(zero_copy_only=False).reshape(rows, *shape)
