"""Speed of xverify's NumPy engine against ONNX Runtime and onnx.reference on real CNNs.

For each model (keras.applications, weights=None, 224x224x3) the script converts it once (cached as
.onnx under the system temp directory), then in ONE process runs the same seeded batch through:

* the engine in float32 (the mirror) and float64 (the oracle),
* ONNX Runtime, CPU provider, graph optimizations ON (ORT_ENABLE_ALL), default threads,
* ``onnx.reference.ReferenceEvaluator`` (few runs: it is slow).

Engine and ONNX Runtime runs alternate in blocks (each after an untimed run, since both keep their
worker threads spinning for a while after a call), so that load from other processes hits both alike;
figures are medians, and ratios are against the peer measured in the same run. Targets (issue):
engine <= 3x ONNX Runtime, >= 10x faster than onnx.reference, float64 oracle <= 2.5x float32.

Usage::

    python benchmarks/engine_vs_ort.py --models mobilenetv2,resnet50 --batch 8 --repeat 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = {"mobilenetv2": "MobileNetV2", "resnet50": "ResNet50"}
TARGETS = {"ort": 3.0, "reference": 10.0, "oracle": 2.5}


def cached_onnx(name: str, cache: Path):
    """The converted model, from ``cache`` if an earlier run stored it."""
    import onnx

    path = cache / f"{name}_224.onnx"
    if path.exists():
        return onnx.load(str(path)), 0.0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from xverify.convert import convert

    start = time.perf_counter()
    model = getattr(keras.applications, MODELS[name])(weights=None, input_shape=(224, 224, 3))
    onnx_model = convert(model)
    seconds = time.perf_counter() - start
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    onnx.save(onnx_model, str(tmp))
    os.replace(tmp, path)
    return onnx_model, seconds


def blas_core() -> str:
    """Which OpenBLAS kernels NumPy runs (the largest factor in the f32 figures), and why."""
    import ctypes
    import glob

    forced = os.environ.get("OPENBLAS_CORETYPE")
    why = f" (OPENBLAS_CORETYPE={forced!r})" if forced is not None else ""
    for path in glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*")):
        for symbol in (
            "scipy_openblas_get_corename64_",
            "scipy_openblas_get_corename",
            "openblas_get_corename",
        ):
            try:
                get = getattr(ctypes.CDLL(path), symbol)
            except (OSError, AttributeError):
                continue
            get.restype = ctypes.c_char_p
            return f"OpenBLAS core {get().decode()}{why}"
    return f"OpenBLAS core unknown{why}"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_model(name: str, batch: int, repeat: int, ref_repeat: int, cache: Path) -> dict:
    import onnxruntime as ort

    from xverify.engine import Interpreter

    model, convert_s = cached_onnx(name, cache)
    input_name = model.graph.input[0].name
    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
    feeds = {input_name: x}

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    engine32, engine64 = Interpreter(model, "float32"), Interpreter(model, "float64")
    out_name = engine32.output_names[0]

    def run_ort():
        return session.run(None, feeds)[0]

    def run32():
        return engine32.run(feeds)[out_name]

    def run64():
        return engine64.run(feeds)[out_name]

    y_ort, y32, y64 = run_ort(), run32(), run64()
    times = {"ort": [], "f32": [], "f64": []}
    runners = {"ort": run_ort, "f32": run32, "f64": run64}
    rounds = max(1, min(3, repeat // 3))
    for r in range(rounds):  # alternate blocks: a burst of outside load hits every runtime alike
        for key, fn in runners.items():
            fn()  # untimed: lets the previous block's spinning threads (BLAS, ORT) go idle
            times[key] += [timed(fn) for _ in range(repeat // rounds + (r < repeat % rounds))]
    f32_near_ref = []
    ref_times = []
    if ref_repeat:
        from onnx.reference import ReferenceEvaluator

        reference = ReferenceEvaluator(model)
        reference.run(None, feeds)  # untimed, as every runtime's first run (its first is ~2x slower)
        for _ in range(ref_repeat):
            ref_times.append(timed(lambda: reference.run(None, feeds)))
            run32()  # untimed, as in the blocks above: BLAS threads spin on after the reference
            f32_near_ref.append(timed(run32))
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "model": name,
        "batch": batch,
        "convert_s": convert_s,
        "median": med,
        "ratio_ort": med["f32"] / med["ort"],
        "ratio_oracle": med["f64"] / med["f32"],
        "diff_ort": float(np.max(np.abs(y32.astype(np.float64) - y_ort))),
        "diff_oracle": float(np.max(np.abs(y64 - y_ort))),
        "out_max": float(np.max(np.abs(y_ort))),
        "ort_runs": times["ort"],
        "f32_runs": times["f32"],
    }
    if ref_times:
        result["median"]["reference"] = statistics.median(ref_times)
        result["ratio_reference"] = statistics.median(ref_times) / statistics.median(f32_near_ref)
    return result


def table(results: list[dict]) -> str:
    def ms(s):
        return f"{s * 1e3:8.1f}"

    lines = [
        (
            f"{'model':12s} {'ORT ms':>8s} {'f32 ms':>8s} {'f64 ms':>8s} {'ref ms':>9s} "
            f"{'f32/ORT':>8s} {'ref/f32':>8s} {'f64/f32':>8s} {'|f32-ORT|':>10s} {'|f64-ORT|':>10s} "
            f"{'max|ORT|':>9s}"
        )
    ]
    for r in results:
        m = r["median"]
        ref = f"{m['reference'] * 1e3:9.0f}" if "reference" in m else f"{'-':>9s}"
        rref = f"{r['ratio_reference']:7.1f}x" if "ratio_reference" in r else f"{'-':>8s}"
        lines.append(
            f"{r['model']:12s} {ms(m['ort'])} {ms(m['f32'])} {ms(m['f64'])} {ref} "
            f"{r['ratio_ort']:7.2f}x {rref} {r['ratio_oracle']:7.2f}x "
            f"{r['diff_ort']:10.2e} {r['diff_oracle']:10.2e} {r['out_max']:9.2e}"
        )
    lines.append(
        f"targets: f32/ORT <= {TARGETS['ort']}x, ref/f32 >= {TARGETS['reference']}x, "
        f"f64/f32 <= {TARGETS['oracle']}x"
    )
    verdicts = []
    for r in results:
        ok = [r["ratio_ort"] <= TARGETS["ort"], r["ratio_oracle"] <= TARGETS["oracle"]]
        if "ratio_reference" in r:
            ok.append(r["ratio_reference"] >= TARGETS["reference"])
        verdicts.append(f"{r['model']}: {'all targets met' if all(ok) else 'target(s) missed'}")
    lines.append("; ".join(verdicts))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="mobilenetv2,resnet50", help=f"comma-separated, from {','.join(MODELS)}"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=10, help="timed runs of ORT and the engine")
    parser.add_argument(
        "--ref-repeat",
        type=int,
        default=3,
        help="timed runs of onnx.reference, after an untimed one (0 skips it; "
        "~1 s a run on MobileNetV2, ~5 s on ResNet50)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "xverify-bench",
        help="where converted .onnx files are kept between runs",
    )
    args = parser.parse_args(argv)
    names = [n.strip().lower() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    import onnxruntime

    print(
        f"numpy {np.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, batch {args.batch}, "
        f"{args.repeat} runs (reference {args.ref_repeat}), {blas_core()}",
        flush=True,
    )
    results = []
    for name in names:
        r = bench_model(name, args.batch, args.repeat, args.ref_repeat, args.cache)
        note = f" (converted in {r['convert_s']:.0f} s)" if r["convert_s"] else ""
        print(
            f"{name}: done{note}; f32 runs ms "
            f"{[round(t * 1e3) for t in r['f32_runs']]}, ORT runs ms "
            f"{[round(t * 1e3) for t in r['ort_runs']]}",
            flush=True,
        )
        results.append(r)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
