"""A runtime fed in batches of a model's fixed batch size (ONNX files exported with batch 1).

``Batched(runner, size).run(feeds)`` runs ``feeds`` ``size`` rows at a time and joins each output
along its first axis (a rank-0 output: stacked), so every runtime sees the same rows in the same
order and the comparisons stay element by element.
"""

from __future__ import annotations

import numpy as np

from xverify.errors import InputDataError


class Batched:
    """``runner`` (any runtime with ``run(feeds, **kwargs) -> dict``) fed ``size`` rows per run."""

    def __init__(self, runner, size: int):
        self.runner = runner
        self.size = size

    def __getattr__(self, name):  # input_names and the like come from the wrapped runtime
        return getattr(self.runner, name)

    def run(self, feeds: dict, **kwargs) -> dict:
        rows = {len(v) for v in feeds.values()}
        n = rows.pop() if len(rows) == 1 else None
        if n is None or n % self.size:
            raise InputDataError(
                f"the model's inputs fix their first dimension to {self.size}, so it runs "
                f"{self.size} sample(s) at a time, but the inputs hold {sorted(rows | {n})} rows: "
                f"give a multiple of {self.size} samples."
            )
        if n == self.size:
            return self.runner.run(feeds, **kwargs)
        if kwargs.get("on_tensor") is not None:  # a callback would see each batch's part alone
            raise TypeError("Batched.run cannot stream tensors (on_tensor) over several batches")
        parts = [
            self.runner.run({k: v[i : i + self.size] for k, v in feeds.items()}, **kwargs)
            for i in range(0, n, self.size)
        ]
        return {name: _join([p[name] for p in parts]) for name in parts[0]}


def _join(values: list) -> np.ndarray:
    values = [np.asarray(v) for v in values]
    return np.concatenate(values) if values[0].ndim else np.stack(values)
