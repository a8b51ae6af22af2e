"""JUnit XML: one test case per output comparison, per Keras weight and per layer, for CI dashboards."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from xverify.load import StrPath
from xverify.report.model import CheckReport


def _case(suite: ET.Element, classname: str, name: str, failure: str | None) -> bool:
    case = ET.SubElement(suite, "testcase", classname=classname, name=name)
    if failure:
        ET.SubElement(case, "failure", message=failure).text = failure
    return failure is not None


def to_junit(report: CheckReport) -> str:
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", name=f"xverify check {report.model.path}")
    failures = 0
    for d in report.comparisons:
        failures += _case(
            suite,
            "xverify.outputs",
            f"{d.a} vs {d.b}: {d.output}",
            None
            if d
            else f"max abs diff {d.max_abs_diff:.3g} > atol {d.atol:g} + "
            f"rtol {d.rtol:g}*|b| ({d.mismatch_fraction:.1%} of "
            f"elements) {d.note}".strip(),
        )
    for w in report.weights:
        failures += _case(
            suite,
            "xverify.weights",
            f"{w.layer}/{w.name}",
            None if w.passed else f"{w.transform}: max abs diff {w.max_abs_diff:.3g}",
        )
    for layer in report.layers:
        bad = {str(k): d.max_abs_diff for k, d in layer.diffs.items() if not d}
        failures += _case(suite, "xverify.layers", layer.name, None if layer.passed else f"diverges: {bad}")
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("time", f"{sum(report.timings.values()):.3f}")
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def write_junit(report: CheckReport, path: StrPath) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(to_junit(report) + "\n")
