"""A runtime fed in batches of a model's fixed batch size (ONNX files exported with batch 1).

``Batched(runner, size).run(feeds)`` runs ``feeds`` ``size`` rows at a time and joins each output
along its first axis (a rank-0 output: stacked), so every runtime sees the same rows in the same
order and the comparisons stay element by element.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from xverify.errors import InputDataError
from xverify.runtimes.contract import Feeds, OnTensor, Outputs, Runtime


class Batched:
    """``runner`` (any runtime: ``run(feeds, taps=()) -> dict``) fed ``size`` rows per run."""

    def __init__(self, runner: Runtime, size: int) -> None:
        self.runner = runner
        self.size = size

    @property
    def name(self) -> str:
        return self.runner.name

    def __getattr__(self, name: str) -> Any:  # spec, input_names come from the wrapped runtime
        return getattr(self.runner, name)

    def run(self, feeds: Feeds, taps: Sequence[str] = ()) -> Outputs:
        n = self._rows(feeds)
        if n == self.size:
            return self.runner.run(feeds, taps=taps)
        parts = [
            self.runner.run({k: v[i : i + self.size] for k, v in feeds.items()}, taps=taps)
            for i in range(0, n, self.size)
        ]
        return {name: _join([p[name] for p in parts]) for name in parts[0]}

    def stream(self, feeds: Feeds, on_tensor: OnTensor) -> Outputs:
        if self._rows(feeds) != self.size:  # a callback would see each batch's part alone
            raise TypeError("Batched cannot stream tensors (on_tensor) over several batches")
        streamed: Outputs = self.runner.stream(feeds, on_tensor)  # type: ignore[attr-defined]  # spec.streams runtimes
        return streamed

    def _rows(self, feeds: Feeds) -> int:
        rows = {len(v) for v in feeds.values()}
        n = rows.pop() if len(rows) == 1 else None
        if n is None or n % self.size:
            raise InputDataError(
                f"the model's inputs fix their first dimension to {self.size}, so it runs "
                f"{self.size} sample(s) at a time, but the inputs hold {sorted(rows if n is None else {n})} rows: "
                f"give a multiple of {self.size} samples."
            )
        return n


def _join(values: Sequence[np.ndarray]) -> np.ndarray:
    arrays = [np.asarray(v) for v in values]
    return np.concatenate(arrays) if arrays[0].ndim else np.stack(arrays)
