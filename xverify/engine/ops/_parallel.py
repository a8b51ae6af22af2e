"""The engine's kernel thread pool: a few workers, each running single-threaded BLAS.

Kernels split large work (images, blocks of channels, batch slices) into chunks with ``run_chunks``.
Two OpenBLAS threads synchronize by spinning, which collapses (10x slower here) as soon as another
process takes one of the cores; independent chunks on single-threaded BLAS just finish later.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

WORKERS = min(4, os.cpu_count() or 1)
_POOL: ThreadPoolExecutor | None = None
_POOL_BLAS_OK = False  # each pool thread could make its BLAS single-threaded


def _blas_single_threaded_here():
    """Make BLAS calls from the current thread run on this thread alone; False if we cannot.

    OpenBLAS keeps one global worker pool: matmuls issued from several threads at once contend for
    it and leave it slow for the main thread's large matmuls afterwards (10x here). OpenBLAS 0.3.27+
    has a per-thread setting; NumPy's wheels bundle it as ``libscipy_openblas*``.
    """
    import ctypes
    import glob

    for path in glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*")):
        try:
            ctypes.CDLL(path).openblas_set_num_threads_local(1)
            return True
        except (OSError, AttributeError):
            continue
    return False


def _init_worker():
    _WORKER.blas_ok = _blas_single_threaded_here()


_WORKER = threading.local()


def workers() -> int:
    """How many threads the kernel pool runs."""
    return WORKERS


def run_chunks(work, n: int, chunk: int, blas: bool = False) -> None:
    """Call ``work(start, stop)`` over ``range(n)`` in chunks, on a thread pool when there are several.

    ``blas``: ``work`` calls BLAS (matmul); it then runs on the pool only where each worker's BLAS
    can be made single-threaded, else sequentially on the calling thread.
    """
    global _POOL, _POOL_BLAS_OK
    chunk = max(1, chunk)
    bounds = [(i, min(n, i + chunk)) for i in range(0, n, chunk)]
    if not bounds:
        return
    if _POOL is None and len(bounds) > 1 and WORKERS > 1:
        _POOL = ThreadPoolExecutor(
            max_workers=WORKERS, thread_name_prefix="xverify-kernel", initializer=_init_worker
        )
        _POOL_BLAS_OK = all(_POOL.submit(lambda: _WORKER.blas_ok).result() for _ in range(WORKERS))
    if _POOL is None or len(bounds) == 1 or WORKERS == 1 or (blas and not _POOL_BLAS_OK):
        for start, stop in bounds:
            work(start, stop)
        return
    for future in [_POOL.submit(work, start, stop) for start, stop in bounds]:
        future.result()
