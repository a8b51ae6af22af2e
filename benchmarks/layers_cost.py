"""What per-layer checking costs: ``xverify.check`` with and without ``layers`` on one model.

    python benchmarks/layers_cost.py [--model resnet50] [--batch 8] [--repeat 3]

Each configuration runs in its own subprocess (so peak memory is its own), on the same converted
model (the conversion is cached first and excluded) and the same seeded inputs. Printed: median check
time without conversion, peak resident memory, and the ratios. Goal (issue 4): per-layer checking at
most 2x the time and at most 2 GiB more peak memory on ResNet50, batch 8.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, resource, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, xverify
model_name, batch, repeat, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
path = sys.argv[5]
times = []
for _ in range(repeat):
    report = xverify.check(path, samples=batch, layers=layers)
    assert report.passed, report.failures()
    times.append(sum(v for k, v in report.timings.items() if k not in ("convert", "load")))
print(json.dumps({"times": times, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "layers": len(report.layers)}))
"""

BUILD = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, xverify
name, path = sys.argv[1], sys.argv[2]
factory = {"resnet50": keras.applications.ResNet50, "mobilenetv2": keras.applications.MobileNetV2}[name]
factory(weights=None).save(path)
report = xverify.check(path, samples=1, layers=False)  # fills the conversion cache
print("built", report.timings.get("convert"))
"""


def run(code: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=os.environ.copy()
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return out.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", choices=["resnet50", "mobilenetv2"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="xverify-bench-")
    os.environ.setdefault("XVERIFY_CACHE_DIR", os.path.join(work, "cache"))
    path = os.path.join(work, f"{args.model}.keras")
    print(f"building {args.model} (weights=None) and caching its conversion ...", flush=True)
    run(BUILD, args.model, path)
    results = {}
    for layers in (False, True):
        data = json.loads(
            run(CHILD, args.model, str(args.batch), str(args.repeat), "1" if layers else "0", path)
        )
        results[layers] = data
    base, full = results[False], results[True]
    t0, t1 = statistics.median(base["times"]), statistics.median(full["times"])
    print(f"\n{args.model}, batch {args.batch}, median of {args.repeat} (conversion excluded)")
    print(f"{'configuration':<28}{'median s':>10}{'peak MiB':>10}")
    print(f"{'check --no-layers':<28}{t0:>10.2f}{base['peak_mib']:>10.0f}")
    print(f"{'check (layers: ' + str(full['layers']) + ')':<28}{t1:>10.2f}{full['peak_mib']:>10.0f}")
    print(
        f"time ratio layers/no-layers: {t1 / t0:.2f}x (goal <= 2x); "
        f"extra peak memory: {(full['peak_mib'] - base['peak_mib']) / 1024:.2f} GiB (goal <= 2 GiB)"
    )


if __name__ == "__main__":
    main()
