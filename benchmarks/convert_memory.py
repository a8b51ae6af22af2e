"""Peak memory and time of ``xverify convert`` against plain tf2onnx, on the same models, same run.

    python benchmarks/convert_memory.py [--models resnet50,vgg16] [--tools xverify,tf2onnx,check]
                                        [--limit-gib 10] [--dir DIR]

Each model is built once (``keras.applications``, ``weights=None``, seeded) and saved as ``.keras``
under ``--dir`` (default ``$TMPDIR/xverify-bench``). Every measurement then runs in its own
subprocess, one at a time, so its peak resident memory is its own:

- ``tf2onnx``: plain tf2onnx the way xverify calls it, without xverify's additions: the model wrapped
  in a ``tf.function`` with its input signature, ``tf2onnx.convert.from_function``, ``onnx.save``;
- ``xverify``: ``python -m xverify.cli convert MODEL -o OUT.onnx``;
- ``check``: ``python -m xverify.cli check MODEL --samples 2 --no-cache`` (conversion included).

The peak is the child's ``ru_maxrss`` from ``os.wait4`` (its VmHWM, TensorFlow, the model and the
conversion together). A watchdog polls the child's VmRSS every 50 ms and kills it above
``--limit-gib`` (default 10: the machine is shared), recorded as "killed > N GiB". The weight bytes
(``model.count_params() * 4``) give the target: peak <= 4x weights + 2 GiB.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BUILD = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
name, path = sys.argv[1], sys.argv[2]
keras.utils.set_random_seed(0)
factory = {"resnet50": keras.applications.ResNet50, "vgg16": keras.applications.VGG16,
           "mobilenetv2": keras.applications.MobileNetV2, "vgg19": keras.applications.VGG19,
           "densenet121": keras.applications.DenseNet121,
           "efficientnetb0": keras.applications.EfficientNetB0}[name]
model = factory(weights=None)
model.save(path)
print(model.count_params() * 4)
"""

# Plain tf2onnx, the way xverify calls it, without xverify's additions (scopes, metadata, checks).
PLAIN = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, onnx, tensorflow as tf, tf2onnx
model = keras.saving.load_model(sys.argv[1], compile=False)
signature = [tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=t.name) for t in model.inputs]
function = tf.function(lambda *args: model(args[0] if len(args) == 1 else list(args),
                                           training=False), input_signature=signature)
with tf.device("/cpu:0"):
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=17)
onnx.save(proto, sys.argv[2])
"""


@dataclass(frozen=True)
class Run:
    """One measured subprocess: peak resident memory, wall time and how it ended."""

    peak_gib: float
    seconds: float
    status: str  # "ok", "killed > N GiB" or "exit N"


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(command: list[str], limit_bytes: int, log: Path) -> Run:
    """Run ``command`` under the watchdog; its peak RSS from ``os.wait4``."""
    start = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    killed = threading.Event()

    def watchdog():
        while child.returncode is None and not killed.is_set():
            if _rss_bytes(child.pid) > limit_bytes:
                killed.set()
                os.killpg(child.pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watchdog, daemon=True)
    thread.start()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    thread.join()
    peak = usage.ru_maxrss * 1024 / 2**30
    if killed.is_set():
        return Run(peak, seconds, f"killed > {limit_bytes / 2**30:.0f} GiB")
    return Run(peak, seconds, "ok" if child.returncode == 0 else f"exit {child.returncode}")


def build(name: str, directory: Path) -> tuple[Path, int]:
    """The model's ``.keras`` file (built once) and its weight bytes."""
    path = directory / f"{name}.keras"
    size_file = directory / f"{name}.weight_bytes"
    if not path.exists() or not size_file.exists():
        out = subprocess.run(
            [sys.executable, "-c", BUILD, name, str(path)], capture_output=True, text=True, check=True
        )
        size_file.write_text(out.stdout.strip().splitlines()[-1])
    return path, int(size_file.read_text())


def commands(tool: str, model: Path, out: Path) -> list[str]:
    if tool == "tf2onnx":
        return [sys.executable, "-c", PLAIN, str(model), str(out)]
    if tool == "xverify":
        return [sys.executable, "-m", "xverify.cli", "convert", str(model), "-o", str(out)]
    if tool == "check":
        return [sys.executable, "-m", "xverify.cli", "check", str(model), "--samples", "2", "--no-cache"]
    raise SystemExit(f"unknown tool {tool!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,vgg16")
    parser.add_argument("--tools", default="xverify,tf2onnx")
    parser.add_argument("--limit-gib", type=float, default=10.0)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "xverify-bench")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    limit = int(args.limit_gib * 2**30)
    print(
        f"{'model':<12} {'weights':>9} {'target':>8} {'tool':<8} {'peak GiB':>9} "
        f"{'x weights':>9} {'seconds':>8}  status",
        flush=True,
    )
    for name in args.models.split(","):
        model, weight_bytes = build(name, args.dir)
        target = (4 * weight_bytes + 2**31) / 2**30
        for tool in args.tools.split(","):
            out = args.dir / f"{name}.{tool}.onnx"
            run = measure(commands(tool, model, out), limit, args.dir / f"{name}.{tool}.log")
            print(
                f"{name:<12} {weight_bytes / 2**20:>6.0f} MB {target:>6.2f} G {tool:<8} "
                f"{run.peak_gib:>9.2f} {run.peak_gib * 2**30 / weight_bytes:>9.1f} "
                f"{run.seconds:>8.1f}  {run.status}",
                flush=True,
            )


if __name__ == "__main__":
    main()
