"""A standalone HTML page of the terminal report (rich's recorded console)."""

from __future__ import annotations

import io

from rich.console import Console

from xverify.report.model import CheckReport
from xverify.report.text import render


def write_html(report: CheckReport, path, verbose: bool = True) -> None:
    console = Console(record=True, width=160, file=io.StringIO())
    render(report, console, verbose=verbose)
    console.save_html(str(path))
