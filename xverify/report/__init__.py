"""The check's result (``CheckReport``) and its renderers: text, JSON, JUnit, HTML."""

from xverify.report.model import CheckReport, LayerDiff

__all__ = ["CheckReport", "LayerDiff"]
