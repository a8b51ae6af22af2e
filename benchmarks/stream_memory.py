"""Memory of reading a large .npy and a Parquet table through sources/ in chunks: flat in their size.

Writes a float32 .npy of each size (a memory map, so writing holds no copy), then iterates it in
chunks of --batch rows in a fresh child process per size, reporting the Python allocations'
peak (tracemalloc) and the process's peak RSS (imports included).

A Parquet table of --rows rows (a fixed-size list of 16 float32 per row) is read the same way;
Arrow's allocations escape tracemalloc, so its figure is the peak RSS.

    python benchmarks/stream_memory.py --sizes-mb 200 800 --rows 100000 1000000 --batch 512
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np

COLUMNS = 256


def write(path: Path, megabytes: int) -> None:
    rows = megabytes * 2**20 // (4 * COLUMNS)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, COLUMNS))
    for start in range(0, rows, 8192):
        array[start : start + 8192] = start
    array.flush()


def write_table(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, pa.schema([("x", pa.list_(pa.float32(), 16))])) as writer:
        for start in range(0, rows, 65536):
            values = np.arange(start * 16, min(rows, start + 65536) * 16, dtype=np.float32)
            writer.write_table(pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(values), 16)}))


def iterate(path: Path, batch: int) -> None:
    from xverify.inputs import InputSpec
    from xverify.sources import open_source

    columns = 16 if path.suffix == ".parquet" else COLUMNS
    spec = [InputSpec("x", (None, columns), "float32")]
    tracemalloc.start()
    total = 0.0
    for chunk in open_source(path, spec).chunks(batch):
        total += float(chunk["x"][:, 0].sum())
    peak = tracemalloc.get_traced_memory()[1]
    rss = _peak_rss_kib()
    print(
        f"{path.name}: {path.stat().st_size / 2**20:.0f} MiB  traced peak {peak / 2**20:.2f} MiB  "
        f"process peak RSS {rss / 1024:.0f} MiB"
    )


def _peak_rss_kib() -> int:
    """VmHWM: this process's peak RSS (ru_maxrss would carry the parent's over fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[200, 800])
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--child", type=Path)
    args = parser.parse_args()
    if args.child:
        return iterate(args.child, args.batch)
    with tempfile.TemporaryDirectory() as folder:
        for megabytes in args.sizes_mb:
            path = Path(folder) / f"x{megabytes}.npy"
            write(path, megabytes)
            subprocess.run(
                [sys.executable, __file__, "--child", str(path), "--batch", str(args.batch)], check=True
            )
            path.unlink()
        for rows in args.rows:
            path = Path(folder) / f"t{rows}.parquet"
            write_table(path, rows)
            subprocess.run(
                [sys.executable, __file__, "--child", str(path), "--batch", str(args.batch)], check=True
            )


if __name__ == "__main__":
    main()
