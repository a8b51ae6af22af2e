"""The HTML report: a self-contained page with the tables and one SVG error chart per runtime pair,
rendered by headless Chromium and judged on the screenshot's pixels."""

from __future__ import annotations

import re

import numpy as np
import pytest

import xverify
from tests import chromium, faults
from xverify.report import chart
from xverify.report.html import to_html, write_html

WIDTH, HEIGHT = 1000, 1400


@pytest.fixture(scope="module")
def failing_report(example_models):
    """small_cnn with one weight of its second Conv changed: conv2 and every layer after it fail."""
    faulty = faults.alter_initializer(example_models.onnx("small_cnn"), "Conv", 1, "xvl4", delta=0.5)
    return xverify.check(example_models.keras("small_cnn"), onnx=faulty, samples=4, ort_optimized=False)


def test_page_holds_the_tables_and_a_chart_per_pair_without_scripts_or_fetches(failing_report):
    page = to_html(failing_report)
    pairs = {pair for layer in failing_report.layers for pair in layer.diffs}
    assert not failing_report.passed and failing_report.first_divergence.layer == "conv2"
    assert page.count("<svg") == len(pairs) == 3
    for heading in ("Outputs", "Layers (", "Weights (", "Error along the layers"):
        assert f"<h2>{heading}" in page
    assert "MISMATCH" in page and "First divergence" in page
    assert "<script" not in page.lower() and not re.search(r"(src|href)=\"?(https?:)?//", page)
    # Every layer row is there, the failing ones marked.
    assert page.count('<tr class="bad">') >= sum(not layer.passed for layer in failing_report.layers)
    assert all(f"<td>{layer.name}</td>" in page for layer in failing_report.layers)


def test_chart_marks_the_first_divergence_and_puts_points_on_a_log_scale(failing_report):
    points = chart.pair_points(failing_report.layers, "onnxruntime|tensorflow")
    svg = chart.svg_chart(points, "onnxruntime vs tensorflow", "conv2")
    circles = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"[^>]*><title>', svg)]
    assert len(circles) == len(points)
    # A 1e6 larger error sits higher (smaller y) by 6 decades' worth of the axis.
    ordered = sorted(zip((p.error for p in points), circles))
    assert ordered[0][1] > ordered[-1][1]
    assert svg.count(f'stroke="{chart.DIVERGENCE}"') == 2  # the marker and its legend swatch
    assert ">conv2</text>" in svg


def test_chart_survives_zero_and_infinite_errors():
    points = [chart.Point("a", 0.0, 1e-4, True), chart.Point("b", float("inf"), 1e-4, False)]
    svg = chart.svg_chart(points, "x vs y")
    assert "nan" not in svg and svg.count("<circle") == 3  # two points and the legend's swatch


def _near(pixels: np.ndarray, colour: str, tolerance: int = 40) -> np.ndarray:
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return np.abs(pixels[..., :3].astype(int) - rgb).sum(axis=-1) <= tolerance


@pytest.mark.skipif(chromium.find() is None, reason="chromium is not installed (apt-get install chromium)")
def test_screenshot_shows_the_series_the_tolerance_and_the_divergence(failing_report, tmp_path):
    image_module = pytest.importorskip("PIL.Image", reason="pillow reads the screenshot (test extra)")
    write_html(failing_report, tmp_path / "report.html")
    png = chromium.screenshot(tmp_path / "report.html", tmp_path / "shot.png", WIDTH, HEIGHT)
    pixels = np.asarray(image_module.open(png).convert("RGB"))
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    assert pixels.std() > 20  # not a blank page
    # The chart region: where the series' blue is drawn (no other element uses it).
    rows, cols = np.nonzero(_near(pixels, chart.SERIES))
    assert rows.size > 500, "no plotted series in the screenshot"
    region = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert region.shape[1] > 0.6 * chart.WIDTH and region.shape[0] > chart.HEIGHT
    for colour, least in ((chart.TOLERANCE, 300), (chart.FAILING, 100), (chart.DIVERGENCE, 200)):
        assert _near(region, colour).sum() >= least, f"{colour} missing from the chart region"
