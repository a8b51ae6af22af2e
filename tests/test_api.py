"""The flat public API (STYLE.md 7): the names users write stay importable from ``xverify``."""

import subprocess
import sys

import xverify

PUBLIC = [
    "CheckReport",
    "ConversionError",
    "InputDataError",
    "LayerDiff",
    "MismatchError",
    "MissingDependencyError",
    "ModelFileError",
    "ResourceLimitError",
    "TensorDiff",
    "UnsupportedOpError",
    "UsageError",
    "XverifyError",
    "__version__",
    "check",
    "convert",
    "explain",
    "extract_weights",
    "golden",
    "runtimes",
    "suggest_tolerance",
]


def test_all_is_the_public_list():
    assert sorted(xverify.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert hasattr(xverify, name)


def test_functions_are_not_shadowed_by_submodules():
    import xverify.convert
    import xverify.explain

    assert callable(xverify.convert) and callable(xverify.explain) and callable(xverify.check)
    import xverify.compare as module  # a module users can import, not shadowed by a function

    assert module.compare and module.TensorDiff is xverify.TensorDiff
    assert xverify.runtimes.NumpyRuntime and xverify.runtimes.OnnxRuntime
    assert callable(xverify.golden.snapshot) and callable(xverify.golden.check_golden)


def test_import_does_not_load_tensorflow():
    code = "import sys, xverify; print('tensorflow' in sys.modules, 'tf2onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
