"""Rebuild the golden bundle fixture of tests/notf: ``python tests/data/build_golden.py``.

It needs TensorFlow (the ``keras`` extra); the bundle it writes is what the TensorFlow-free venv of
``.ci/run`` checks. Eight samples keep it under 1 MB.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "tests" / "data" / "golden_small_cnn"
SNAPSHOT_OPTIONS = {"samples": 8, "seed": 0}


def main() -> None:
    from xverify.golden import snapshot

    made = snapshot(ROOT / "models" / "small_cnn.keras", BUNDLE, force=True, cache=False, **SNAPSHOT_OPTIONS)
    size = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    print(f"wrote {made.directory} ({size} bytes, {len(made.manifest['layers']['rows'])} layers)")


if __name__ == "__main__":
    main()
