"""An inline SVG chart of the error along the layers for one runtime pair: x the layers in order,
y the max abs diff on a log scale, the tolerance each layer was judged at, the first divergence
marked. Plain SVG (no script, no fetches), so the HTML report stays one self-contained file."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xverify.report.model import LayerDiff
    from xverify.runtimes.contract import Pair

# Colours are part of the contract with tests/test_html.py, which looks for them in a screenshot.
SERIES = "#1f6feb"
FAILING = "#d1242f"
TOLERANCE = "#e8890c"
DIVERGENCE = "#8250df"

WIDTH, HEIGHT = 900, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 40, 62


@dataclass(frozen=True)
class Point:
    """One layer's error for the pair, and the absolute tolerance it was judged at."""

    layer: str
    error: float  # max abs diff; 0, inf or NaN are drawn at the edge of the plot
    tolerance: float
    passed: bool


def pair_points(layers: Sequence[LayerDiff], pair: Pair | str) -> list[Point]:
    """The layers (``LayerDiff``) that compared ``pair`` ("a|b"), in order."""
    return [
        Point(layer.name, d.max_abs_diff, d.atol, d.passed)
        for layer in layers
        if (d := layer.diffs.get(pair)) is not None
    ]


def _decades(points: list[Point]) -> tuple[int, int]:
    values = [v for p in points for v in (p.error, p.tolerance) if math.isfinite(v) and v > 0]
    if not values:
        return -8, 0
    low, high = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    return low, max(high, low + 1)


def _y_of(low: int, high: int) -> Callable[[float], float]:
    span = HEIGHT - _TOP - _BOTTOM

    def y(value: float) -> float:
        if math.isnan(value) or value == math.inf:
            return _TOP
        if value <= 0:
            return _TOP + span  # exact agreement: on the floor of the scale
        fraction = (math.log10(value) - low) / (high - low)
        return _TOP + span * (1 - min(max(fraction, 0.0), 1.0))

    return y


def _x_of(count: int) -> Callable[[int], float]:
    span = WIDTH - _LEFT - _RIGHT
    return lambda i: _LEFT + span * (i + 0.5) / max(count, 1)


def _axes(low: int, high: int, y: Callable[[float], float]) -> list[str]:
    parts = []
    step = max(1, (high - low) // 8)
    for decade in range(low, high + 1, step):
        at = y(10.0**decade)
        parts.append(
            f'<line x1="{_LEFT}" y1="{at:.1f}" x2="{WIDTH - _RIGHT}" y2="{at:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{_LEFT - 6}" y="{at + 4:.1f}" text-anchor="end">1e{decade}</text>'
        )
    bottom = HEIGHT - _BOTTOM
    parts.append(
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}" stroke="#6b7280"/>'
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{WIDTH - _RIGHT}" y2="{bottom}" stroke="#6b7280"/>'
        f'<text transform="translate(14 {(_TOP + bottom) / 2}) rotate(-90)" text-anchor="middle">'
        "max abs diff (log)</text>"
    )
    return parts


def _x_labels(points: list[Point], x: Callable[[int], float]) -> list[str]:
    every = max(1, math.ceil(len(points) / 30))  # about 30 names fit under the axis
    parts = []
    for i, p in enumerate(points):
        if i % every:
            continue
        name = p.layer if len(p.layer) <= 14 else p.layer[:13] + "…"
        parts.append(
            f'<text transform="translate({x(i):.1f} {HEIGHT - _BOTTOM + 10}) rotate(45)" '
            f'font-size="10">{escape(name)}</text>'
        )
    return parts


def _legend(pair_label: str, failing: bool, marked: bool) -> str:
    """The legend, naming only what the chart draws."""
    items = [
        (f'<line x1="0" y1="0" x2="22" y2="0" stroke="{SERIES}" stroke-width="2.5"/>', pair_label),
        (
            f'<line x1="0" y1="0" x2="22" y2="0" stroke="{TOLERANCE}" stroke-width="3" '
            'stroke-dasharray="6 3"/>',
            "tolerance (the layer's atol)",
        ),
    ]
    if failing:
        items.append((f'<circle cx="11" cy="0" r="5" fill="{FAILING}"/>', "layer out of tolerance"))
    if marked:
        mark = f'<line x1="11" y1="-7" x2="11" y2="7" stroke="{DIVERGENCE}" stroke-width="3"/>'
        items.append((mark, "first divergence"))
    parts, at = [], _LEFT
    for mark, label in items:
        parts.append(f'<g transform="translate({at} 18)">{mark}<text x="28" y="4">{escape(label)}</text></g>')
        at += 40 + 7 * len(label)
    return "".join(parts)


def svg_chart(points: list[Point], pair_label: str, first_layer: str | None = None) -> str:
    """The chart as an ``<svg>`` element.

    Args:
        points: the layers compared for the pair, in order (``pair_points``).
        pair_label: the series name in the legend ("numpy vs tensorflow").
        first_layer: the pair's first divergent layer, marked with a vertical line.
    """
    low, high = _decades(points)
    y, x = _y_of(low, high), _x_of(len(points))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11" fill="#111827" '
        f'role="img" aria-label="error along the layers, {escape(pair_label)}">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]
    parts += _axes(low, high, y) + _x_labels(points, x)
    names = [p.layer for p in points]
    if first_layer in names:
        at = x(names.index(first_layer))
        parts.append(
            f'<line x1="{at:.1f}" y1="{_TOP}" x2="{at:.1f}" y2="{HEIGHT - _BOTTOM}" '
            f'stroke="{DIVERGENCE}" stroke-width="3"/><text x="{at + 5:.1f}" y="{_TOP + 10}" '
            f'fill="{DIVERGENCE}">{escape(first_layer)}</text>'
        )
    tolerance = " ".join(f"{x(i):.1f},{y(p.tolerance):.1f}" for i, p in enumerate(points))
    parts.append(
        f'<polyline points="{tolerance}" fill="none" stroke="{TOLERANCE}" stroke-width="3" '
        'stroke-dasharray="6 3"/>'
    )
    series = " ".join(f"{x(i):.1f},{y(p.error):.1f}" for i, p in enumerate(points))
    parts.append(f'<polyline points="{series}" fill="none" stroke="{SERIES}" stroke-width="2.5"/>')
    for i, p in enumerate(points):
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(p.error):.1f}" r="{4 if p.passed else 5.5}" '
            f'fill="{SERIES if p.passed else FAILING}"><title>{escape(p.layer)}: max abs diff '
            f"{p.error:.3g}, tolerance {p.tolerance:.3g}</title></circle>"
        )
    parts.append(_legend(pair_label, not all(p.passed for p in points), first_layer in names))
    return "".join(parts) + "</svg>"
