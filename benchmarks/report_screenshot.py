"""The HTML report of a failing check, as a person sees it: small_cnn with one weight of its second
Conv changed (tests/faults.py), rendered by headless Chromium into benchmarks/report_screenshot.png.

Run: PYTHONPATH=. python benchmarks/report_screenshot.py  (needs chromium and pillow)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image

import xverify
from tests import chromium, faults
from xverify.convert import convert
from xverify.load import load_keras
from xverify.report.html import write_html

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "report_screenshot.png"


def main() -> None:
    os.chdir(ROOT)  # the page names the model as a user would type it
    keras_model = load_keras("models/small_cnn.keras")
    faulty = faults.alter_initializer(convert(keras_model), "Conv", 1, "xvl4", delta=0.5)
    report = xverify.check("models/small_cnn.keras", onnx=faulty, samples=16)
    with tempfile.TemporaryDirectory() as work:
        page = Path(work) / "report.html"
        write_html(report, page)
        shot = chromium.screenshot(page, Path(work) / "shot.png", 1000, 1500)
        # A palette of 64 colours keeps the file small; the page is flat colours and text.
        Image.open(shot).convert("RGB").quantize(64).save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
