"""Shared fixtures: the example models, their ONNX conversions (built once per session), a seeded RNG.

TensorFlow takes seconds to import and tf2onnx about a second per small model, so every model is
loaded and converted at most once per test session. Conversions are cached in a private directory,
never the user's.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODELS = Path(__file__).resolve().parent.parent / "models"
EXAMPLES = ("seed_regression", "trained_regression", "small_cnn", "text_lstm")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Keep xverify's conversion cache inside the test session's temporary directory."""
    previous = os.environ.get("XVERIFY_CACHE_DIR")
    os.environ["XVERIFY_CACHE_DIR"] = str(tmp_path_factory.mktemp("xverify-cache"))
    yield
    if previous is None:
        os.environ.pop("XVERIFY_CACHE_DIR", None)
    else:
        os.environ["XVERIFY_CACHE_DIR"] = previous


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS


class _Models:
    """Lazily loaded example models and conversions, shared by the whole session."""

    def __init__(self):
        self._keras, self._onnx = {}, {}

    def path(self, name: str) -> Path:
        return MODELS / f"{name}.keras"

    def keras(self, name: str):
        if name not in self._keras:
            from xverify.load import load_keras

            self._keras[name] = load_keras(self.path(name))
        return self._keras[name]

    def onnx(self, name: str):
        if name not in self._onnx:
            from xverify.convert import convert

            self._onnx[name] = convert(self.keras(name))
        return self._onnx[name]

    def onnx_file(self, name: str, directory: Path) -> Path:
        import onnx

        target = directory / f"{name}.onnx"
        if not target.exists():
            onnx.save(self.onnx(name), str(target))
        return target


@pytest.fixture(scope="session")
def example_models() -> _Models:
    return _Models()


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx")


def pytest_collection_modifyitems(config, items):
    """Files holding slow tests run first: with two workers (``-n 2 --dist loadfile``) a slow file
    left to the end runs alone while the other worker idles."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: each file keeps its order
