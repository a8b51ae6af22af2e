"""A runtime fed in batches of a model's fixed batch size (ONNX files exported with batch 1).

``Batched(runner, size).run(feeds)`` runs ``feeds`` ``size`` rows at a time and joins each output
along its first axis (a rank-0 output: stacked), so every runtime sees the same rows in the same
order and the comparisons stay element by element.
"""

from __future__ import annotations

import numpy as np

from xverify.errors import InputDataError


class Batched:
    """``runner`` (any runtime: ``run(feeds, taps=()) -> dict``) fed ``size`` rows per run."""

    def __init__(self, runner, size: int):
        self.runner = runner
        self.size = size

    def __getattr__(self, name):  # spec, name, input_names come from the wrapped runtime
        return getattr(self.runner, name)

    def run(self, feeds: dict, taps=()) -> dict:
        n = self._rows(feeds)
        if n == self.size:
            return self.runner.run(feeds, taps=taps)
        parts = [
            self.runner.run({k: v[i : i + self.size] for k, v in feeds.items()}, taps=taps)
            for i in range(0, n, self.size)
        ]
        return {name: _join([p[name] for p in parts]) for name in parts[0]}

    def stream(self, feeds: dict, on_tensor) -> dict:
        if self._rows(feeds) != self.size:  # a callback would see each batch's part alone
            raise TypeError("Batched cannot stream tensors (on_tensor) over several batches")
        return self.runner.stream(feeds, on_tensor)

    def _rows(self, feeds: dict) -> int:
        rows = {len(v) for v in feeds.values()}
        n = rows.pop() if len(rows) == 1 else None
        if n is None or n % self.size:
            raise InputDataError(
                f"the model's inputs fix their first dimension to {self.size}, so it runs "
                f"{self.size} sample(s) at a time, but the inputs hold {sorted(rows | {n})} rows: "
                f"give a multiple of {self.size} samples."
            )
        return n


def _join(values: list) -> np.ndarray:
    values = [np.asarray(v) for v in values]
    return np.concatenate(values) if values[0].ndim else np.stack(values)
