"""The interpreter's memory policy: malloc tuning, and whether a tensor's memory is nobody else's.

Both are process facts measured once (glibc's thresholds, how CPython counts the references a
call borrows), kept apart from the interpreter's loop, which only asks ``exclusive``.
"""

from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

# glibc keeps freed blocks up to this size for reuse (see ``keep_freed_memory``).
MALLOC_KEEP = 1 << 30
_tuned = False


def keep_freed_memory() -> None:
    """Ask glibc to keep freed large blocks for reuse instead of returning them to the OS.

    By default glibc serves every block above 32 MB (a batch-8 feature map of a CNN is 40 MB) with a
    fresh ``mmap`` and unmaps it on free, so every kernel output page-faults its memory back in:
    that doubles the cost of an elementwise op. Raising the mmap and trim thresholds lets the
    interpreter's tensors reuse the memory of tensors it has freed; the price is that the process
    keeps up to that much free memory mapped after a run. A no-op outside glibc, and when the
    environment sets ``XVERIFY_MALLOC_TUNING=0`` (for a host process that tunes malloc itself).
    Process-wide, so done once.
    """
    global _tuned
    if _tuned or not sys.platform.startswith("linux") or os.environ.get("XVERIFY_MALLOC_TUNING", "1") == "0":
        return
    _tuned = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, MALLOC_KEEP)
        libc.mallopt(m_trim_threshold, MALLOC_KEEP)
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        pass


def _refcount(array) -> int:
    return sys.getrefcount(array)


def exclusive(array, holders: int) -> bool:
    """Whether ``holders`` containers (and the caller's argument) are all that reach ``array``'s memory.

    A view (Reshape, Squeeze, Identity output, a caller's copy) holds a reference to the array or
    to its base, so any other user of the memory shows up in a reference count. The counts are
    compared with ones measured the same way at import (Python versions differ in how many
    references a call borrows), and only on CPython, where reference counts are exact.
    """
    if _REFS is None or not array.flags.writeable or _refcount(array) != holders + _REFS[0]:
        return False
    base = array.base
    while base is not None:  # a view of an array only this view holds (e.g. a reshaped result)
        if not isinstance(base, np.ndarray) or _refcount(base) != _REFS[1]:
            return False
        base = base.base
    return True


def _calibrate_refs():
    """Reference counts ``exclusive`` sees for an array held by no container, and for the base of
    a view held only by that view; ``None`` where reference counts cannot be trusted."""
    if sys.implementation.name != "cpython":
        return None
    box = [np.zeros(2)]
    alone = (lambda array: _refcount(array))(box[0]) - 1  # as exclusive counts; the list holds it
    view = box.pop().reshape(1, 2)
    base = view.base
    only_view = _refcount(base)
    del base
    return alone, only_view


_REFS = _calibrate_refs()
