"""models/build.py as a module, so tests build the learner's models exactly as the examples are."""

from __future__ import annotations

import importlib.util
from pathlib import Path

MODELS = Path(__file__).resolve().parent.parent / "models"
_spec = importlib.util.spec_from_file_location("xverify_models_build", MODELS / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)
