"""The check's result (``CheckReport``), its typed fields, and its renderers: text, JSON, JUnit,
HTML."""

from xverify.report.model import CheckReport, LayerDiff
from xverify.report.records import FirstDivergence, InputsInfo, ModelInfo, OracleDistance, Suspect

__all__ = [
    "CheckReport",
    "FirstDivergence",
    "InputsInfo",
    "LayerDiff",
    "ModelInfo",
    "OracleDistance",
    "Suspect",
]
