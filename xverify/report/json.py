"""The JSON report (schema ``xverify.check/1``)."""

from __future__ import annotations

import json
import math

from xverify.load import StrPath
from xverify.report.model import CheckReport


def _clean(value: object) -> object:
    """JSON has no inf/NaN: write them as strings/null so every parser reads the report."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def to_json(report: CheckReport) -> str:
    return json.dumps(_clean(report.to_dict()), indent=2)


def write_json(report: CheckReport, path: StrPath) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(to_json(report) + "\n")
