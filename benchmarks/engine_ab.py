"""The engine of another checkout against this one, paired in one process (a change's "no slower").

On a shared machine two benchmark runs minutes apart see different load, and the difference
swamps a few percent. Here the other checkout's ``xverify`` package is copied under the name
``xverify_before`` (its imports rewritten), both engines load the same model, and their runs
alternate (each after an untimed one, the order flipped every pair), so load hits both alike.
Reports the medians, the fastest runs, and the median of the per-pair ratios, in wall time and in
process CPU time; the outputs of the two engines are compared bit for bit first.

``--one-worker`` (with ``OPENBLAS_NUM_THREADS=1``) runs everything on one thread, where CPU time
is least disturbed by other processes. Usage (the model is the one ``engine_vs_ort.py`` converted
and cached)::

    git worktree add --detach /tmp/before <commit>
    PYTHONPATH=$PWD python benchmarks/engine_ab.py --before /tmp/before --model mobilenetv2
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def import_before(checkout: Path, into: Path):
    """``checkout``'s ``xverify.engine`` imported as ``xverify_before.engine``."""
    target = into / "xverify_before"
    shutil.copytree(checkout / "xverify", target)
    for path in target.rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"\bxverify(?=[. ])", "xverify_before", text))
    sys.path.insert(0, str(into))
    return importlib.import_module("xverify_before.engine")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the other commit")
    parser.add_argument("--model", default="mobilenetv2", help="mobilenetv2 or resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument(
        "--one-worker",
        action="store_true",
        help="run the kernel pools on the calling thread (with OPENBLAS_NUM_THREADS=1: one thread in all)",
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "xverify-bench")
    args = parser.parse_args(argv)
    import onnx

    import xverify.engine as after_engine

    path = args.cache / f"{args.model}_224.onnx"
    if not path.exists():
        parser.error(f"{path} not found: run benchmarks/engine_vs_ort.py --models {args.model} once")
    with tempfile.TemporaryDirectory() as tmp:
        before_engine = import_before(args.before, Path(tmp))
        if args.one_worker:
            for pool in ("xverify_before.engine.ops._parallel", "xverify.engine.ops._parallel"):
                importlib.import_module(pool).WORKERS = 1
        model = onnx.load(str(path))
        x = np.random.default_rng(0).standard_normal((args.batch, 224, 224, 3)).astype(np.float32)
        feeds = {model.graph.input[0].name: x}
        engines = {
            "before": before_engine.Interpreter(model, args.dtype),
            "after": after_engine.Interpreter(model, args.dtype),
        }
        outputs = {key: engine.run(feeds) for key, engine in engines.items()}
        same = all(np.array_equal(outputs["before"][k], outputs["after"][k]) for k in outputs["after"])
        wall: dict[str, list[float]] = {"before": [], "after": []}
        cpu: dict[str, list[float]] = {"before": [], "after": []}
        load = [_load()]
        for pair in range(args.pairs):
            for key in ("before", "after") if pair % 2 == 0 else ("after", "before"):
                engines[key].run(feeds)  # untimed: lets the other engine's threads go idle
                c, t = time.process_time(), time.perf_counter()
                engines[key].run(feeds)
                wall[key].append(time.perf_counter() - t)
                cpu[key].append(time.process_time() - c)
        load.append(_load())
    print(
        f"{args.model} batch {args.batch} {args.dtype}, {args.pairs} pairs, load average {load[0]:.2f} -> {load[1]:.2f}"
    )
    print(f"outputs bit-identical: {same}")
    for label, times in (("wall", wall), ("CPU", cpu)):
        ratio = statistics.median(a / b for a, b in zip(times["after"], times["before"]))
        print(
            f"{label:4s} ms: before median {statistics.median(times['before']) * 1e3:7.1f} "
            f"(fastest {min(times['before']) * 1e3:6.1f}), after median "
            f"{statistics.median(times['after']) * 1e3:7.1f} (fastest {min(times['after']) * 1e3:6.1f}); "
            f"median after/before {ratio:.3f}"
        )
    return 0


def _load() -> float:
    import os

    return os.getloadavg()[0]


if __name__ == "__main__":
    sys.exit(main())
