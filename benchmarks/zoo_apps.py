"""The keras.applications half of the zoo: every constructor, built with ``weights=None`` at a small
input size, saved, and checked by the CLI exactly as a user would (``xverify check MODEL --samples 2``).

Each model is built in one child process and checked in another, both under the zoo's timeout and
memory watchdog (``zoo_run``); the row records the check's exit code, verdict, time and peak RSS, and
for a refusal the message xverify printed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from zoo_run import ChildResult, run_child

ROOT = Path(__file__).resolve().parent.parent
# Smallest convenient input per family: the constructors accept any size >= 32 with weights=None,
# except the Inception family (>= 75) and Xception (>= 71).
_LARGER = {"InceptionV3": 96, "InceptionResNetV2": 96, "Xception": 96}
DEFAULT_SIZE = 64

_BUILD = """
import sys, keras
name, size, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
keras.utils.set_random_seed(0)
model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))
model.save(path)
print(model.count_params())
"""


def constructors() -> list[str]:
    """Every model constructor keras.applications exports (capitalised callables)."""
    import keras

    return sorted(
        n for n in dir(keras.applications) if n[:1].isupper() and callable(getattr(keras.applications, n))
    )


def child_env(cache_dir: Path) -> dict:
    """The worktree's xverify first on the path, TensorFlow's banners off, a private cache."""
    return dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", XVERIFY_CACHE_DIR=str(cache_dir))


def check_application(name: str, workdir: Path, timeout: float) -> dict:
    """Build, save and check one constructor's model; the scoreboard row."""
    size = _LARGER.get(name, DEFAULT_SIZE)
    path = workdir / f"{name}.keras"
    built = run_child(
        [sys.executable, "-c", _BUILD, name, str(size), str(path)], timeout=timeout, env=child_env(workdir)
    )
    row = {"kind": "application", "model": name, "input": f"{size}x{size}x3"}
    if built.returncode != 0:
        return {**row, **_outcome(built), "stage": "build"}
    row["params"] = int(built.stdout.split()[-1])
    checked = run_child(
        [sys.executable, "-m", "xverify.cli", "check", str(path), "--samples", "2"],
        timeout=timeout,
        env=child_env(workdir),
        cwd=str(ROOT),
    )
    path.unlink(missing_ok=True)
    return {**row, **_outcome(checked), "stage": "check"}


def _outcome(result: ChildResult) -> dict:
    verdict = {0: "pass", 1: "mismatch", 2: "refused"}.get(result.returncode, "crash")
    if result.killed:
        verdict = f"killed ({result.killed})"
    out = {
        "exit": result.returncode,
        "verdict": verdict,
        "seconds": round(result.seconds, 1),
        "peak_rss": result.peak_rss,
    }
    message = result.stderr.strip() or result.stdout.strip()
    if result.returncode == 1:  # the verdict's lines, not the tables before them
        out["message"] = " | ".join(
            line.strip()
            for line in message.splitlines()
            if any(k in line.lower() for k in ("divergence", "weight ", "diverged", "fail"))
        )[:600]
    elif result.returncode != 0:
        out["message"] = _last_message(message)
        out["internal"] = "internal error" in message
    return out


def _last_message(text: str) -> str:
    """The error message a user sees (the last non-empty paragraph, joined on one line)."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    return " ".join((paragraphs[-1] if paragraphs else "").split())[:600]


def main(out_path: str, timeout: float, only: list[str] | None = None) -> None:
    """Append one JSON row per constructor to ``out_path``."""
    done = set()
    if os.path.exists(out_path):
        with open(out_path) as lines:
            done = {json.loads(line)["model"] for line in lines if line.strip()}
    with tempfile.TemporaryDirectory(prefix="zoo-apps-") as tmp:
        for name in only or constructors():
            if name in done:
                continue
            row = check_application(name, Path(tmp), timeout)
            with open(out_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
