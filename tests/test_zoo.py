"""A seeded sample of the zoo's generated models (benchmarks/zoo.py) in the CI suite.

Each model is generated, converted and checked clean, then checked again with one injected fault,
in this process (as the zoo's worker does). The clean checks must give no internal error and no
false alarm (a refusal is allowed: exit 2 with one message); every injected fault must be found.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("keras")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

SAMPLE = range(5000, 5100)  # seeds the benchmark run (0..1999) does not use


@pytest.fixture(scope="module")
def rows():
    from zoo_worker import check_one

    return [check_one(seed) for seed in SAMPLE]


@pytest.mark.slow
def test_no_internal_error_and_no_false_alarm(rows):
    bad = [
        (r["seed"], r["verdict"], r.get("message") or r.get("failures"))
        for r in rows
        if r["verdict"] not in ("pass", "refused")
    ]
    assert not bad, bad
    assert len(rows) >= 100


@pytest.mark.slow
def test_refusals_are_one_message_each(rows):
    from zoo_report import _repeats

    refused = [r for r in rows if r["verdict"] == "refused"]
    assert all(r["exit"] == 2 and not _repeats(r["message"]) for r in refused), refused


@pytest.mark.slow
def test_every_injected_fault_is_detected_and_most_are_localized(rows):
    faults = [r["fault"] for r in rows if r.get("fault", {}).get("injected")]
    assert len(faults) >= 50
    missed = [f for f in faults if not f["detected"]]
    assert not missed, missed
    localized = sum(bool(f.get("localized")) for f in faults)
    assert localized >= 0.9 * len(faults), [f for f in faults if not f.get("localized")]
