"""The memory budget: what xverify may allocate for one tensor, one input batch or one file's contents.

Anything a file or an argument declares (a model input of 4e10 elements, a zip member that inflates
to 2 GiB, an HDF5 dataset, an ``.npy`` header) is checked against the budget *before* it is
allocated, so an absurd or hostile declaration ends in one message with the figure and what to do,
never in a ``MemoryError`` or the kernel's OOM killer. The default is a quarter of the machine's (or
the container's) memory; ``--max-memory`` / ``max_memory=`` changes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import re
import sys
from dataclasses import dataclass

from xverify.errors import ResourceLimitError, UsageError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def physical_memory() -> int:
    """Bytes of memory this process can use: the machine's, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as handle:
                text = handle.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def human(nbytes: float) -> str:
    """``6442450944`` -> ``"6.0 GiB"``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{int(nbytes)} bytes"


@dataclass(frozen=True)
class Budget:
    """A memory budget in bytes.

    Example::

        budget = Budget.parse("6GiB")
        budget.require(2**33, "input 'x' (2, 65536, 16384) float32", "pass fewer --samples")
    """

    nbytes: int
    chosen: bool = True  # False for the default (a quarter of the memory)

    @classmethod
    def default(cls) -> Budget:
        return cls(physical_memory() // 4, chosen=False)

    @classmethod
    def parse(cls, value) -> Budget:
        """A budget from bytes (int) or text such as ``"6GiB"``, ``"500MB"``, ``"2e9"``; None: default."""
        if value is None:
            return cls.default()
        if isinstance(value, Budget):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number, unit = float(value), ""
        else:
            match = _SIZE.match(str(value))
            if not match or match.group(2).lower() not in _UNITS:
                raise UsageError(
                    f"--max-memory {value!r}: expected a size such as 6GiB, 500MB or 8e9 (bytes)."
                )
            number, unit = float(match.group(1)), match.group(2).lower()
        nbytes = number * _UNITS[unit]
        if not math.isfinite(nbytes) or nbytes < 1:
            raise UsageError(f"--max-memory {value!r}: expected a positive, finite size.")
        return cls(int(nbytes))

    def require(self, nbytes: float, what: str, remedy: str) -> None:
        """Raise ResourceLimitError unless ``nbytes`` (needed for ``what``) fits the budget."""
        if nbytes > self.nbytes:
            origin = "set by --max-memory" if self.chosen else "a quarter of this machine's memory"
            raise ResourceLimitError(
                f"{what} would need {human(nbytes)}, over the memory budget of {human(self.nbytes)} "
                f"({origin}). {remedy}"
            )


def tensor_bytes(shape, itemsize: int) -> float:
    """Bytes of a tensor of ``shape`` (a float, so absurd declarations do not overflow)."""
    return float(math.prod(float(d) for d in shape)) * itemsize


def require_graph(onnx_model, batch: int, budget: Budget) -> None:
    """Refuse a model whose largest statically known tensor, at ``batch`` samples, exceeds the budget.

    Shapes come from ``shapes.value_infos`` (inferred once, on a weightless copy); a symbolic first
    dimension is the batch, and a tensor with any other unknown dimension cannot be bounded here.
    """
    from onnx import helper

    from xverify.shapes import value_infos

    largest, largest_bytes = None, 0.0
    for name, info in value_infos(onnx_model).items():
        tensor = info.type.tensor_type
        dims = [
            d.dim_value if d.HasField("dim_value") else (batch if i == 0 else None)
            for i, d in enumerate(tensor.shape.dim)
        ]
        if not tensor.HasField("shape") or None in dims:
            continue
        try:
            itemsize = helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize
        except (KeyError, TypeError, ValueError):
            continue
        nbytes = tensor_bytes(dims, itemsize)
        if nbytes > largest_bytes:
            largest, largest_bytes = (name, tuple(dims)), nbytes
    if largest is not None:
        budget.require(
            largest_bytes,
            f"tensor {largest[0]!r} of shape {largest[1]} (batch {batch})",
            "Pass fewer --samples (the batch), raise --max-memory if the machine has "
            "the memory, or check the model's declared dimensions.",
        )


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc's ``malloc_trim``): conversion frees copies of
    weights in pieces below glibc's mmap threshold, which stay resident in the heap until
    trimmed and would add to the next step's peak. A no-op on other C libraries."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
