"""Check a range of generated models in one process (TensorFlow imported once), one JSON row each.

``python zoo_worker.py FIRST COUNT`` prints, for each seed, a ``start`` line and then the row, so
that a parent that sees the worker die (crash, watchdog) knows which model killed it and can resume
after it. Each model: generate, convert once, check the clean conversion with every runtime and the
layer comparison (``samples=2``, as the CLI is run in the zoo), then inject one fault into a copy and
check that too.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _outcome(call) -> dict:
    """Run ``call`` (a check); a verdict, or the refusal / internal error it raised."""
    import xverify

    try:
        report = call()
    except xverify.XverifyError as exc:
        code = exc.exit_code
        return {
            "exit": code,
            "verdict": "mismatch" if code == 1 else "refused",
            "message": " ".join(str(exc).split())[:600],
            "error": type(exc).__name__,
        }
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)[-3:]
        where = "; ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in frames)
        return {
            "exit": 2,
            "verdict": "internal error",
            "error": type(exc).__name__,
            "message": " ".join(f"{exc}".split())[:400],
            "where": where,
        }
    out = {
        "exit": 0 if report.passed else 1,
        "verdict": "pass" if report.passed else "mismatch",
        "notes": list(report.notes),
    }
    if not report.passed:
        out["failures"] = report.failures()[:6]
    out["_report"] = report
    return out


def check_one(seed: int) -> dict:
    """The scoreboard row of generated model ``seed``."""
    import keras
    from zoo_faults import KINDS, inject
    from zoo_forms import generate

    import xverify
    from xverify.inputs import input_specs, synthetic

    start = time.perf_counter()
    try:
        generated = generate(seed)
    except Exception as exc:
        return {"seed": seed, "verdict": "generator error", "message": f"{type(exc).__name__}: {exc}"}
    model = generated.model
    row = {
        "kind": "generated",
        "seed": seed,
        "form": generated.form,
        "layers": sorted(set(generated.layer_classes)),
    }
    converted = {}

    def clean():
        converted["onnx"] = xverify.convert(model)
        return xverify.check(model, onnx=converted["onnx"], samples=2)

    row.update(_outcome(clean))
    row.pop("_report", None)
    row["seconds"] = round(time.perf_counter() - start, 3)
    if row["verdict"] == "pass":
        kind = KINDS[(seed // 6) % len(KINDS)]  # every form meets every fault kind
        rng = np.random.default_rng(seed + 10_000)
        feeds = synthetic(input_specs(converted["onnx"]), 2, 0)
        fault = inject(model, converted["onnx"], kind, rng, feeds)
        row["fault"] = _fault_row(model, fault, kind) if fault else {"kind": kind, "injected": False}
    row["rss"] = _rss()
    keras.backend.clear_session()
    return row


def _fault_row(model, fault, kind) -> dict:
    import xverify

    outcome = _outcome(lambda: xverify.check(model, onnx=fault.model, samples=2))
    report = outcome.pop("_report", None)
    row = {
        "kind": kind,
        "injected": True,
        "layer": fault.layer,
        "detail": fault.detail,
        "detected": outcome["exit"] == 1,
        "verdict": outcome["verdict"],
    }
    if report is not None:
        first = report.first_divergence
        weights = {w.layer for w in report.weights if not w.passed}
        row["first_divergence"] = first.layer if first else None
        row["weights_failed"] = sorted(weights)
        row["localized"] = (first is not None and first.layer == fault.layer) or fault.layer in weights
    else:
        row["message"] = outcome.get("message")
    return row


def main(first: int, count: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings

    warnings.filterwarnings("ignore")
    for seed in range(first, first + count):
        print(json.dumps({"start": seed}), flush=True)
        row = check_one(seed)
        row["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps(row, default=str), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
