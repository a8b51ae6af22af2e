"""load.py: formats told by their bytes; bad files get one clear ModelFileError."""

import numpy as np
import pytest

from xverify.errors import ModelFileError
from xverify.load import detect_format, load_keras, load_onnx, open_model


def test_formats_detected(models_dir, tmp_path, example_models):
    assert detect_format(models_dir / "seed_regression.keras") == "keras"
    assert detect_format(models_dir / "seed_regression.h5") == "h5"
    assert detect_format(example_models.onnx_file("seed_regression", tmp_path)) == "onnx"


def test_keras_and_h5_load_the_same_weights(models_dir):
    a = load_keras(models_dir / "seed_regression.keras").get_weights()
    b = load_keras(models_dir / "seed_regression.h5").get_weights()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert a[0][0, 1] == np.float32(0.48899287)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("missing.keras", None, "no such file"),
        ("empty.keras", b"", "empty"),
        (
            "random.keras",
            bytes(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8)),
            "expected a .keras zip archive",
        ),
        ("text.h5", b"this is not a model\n", "expected an HDF5 file"),
    ],
)
def test_bad_model_files(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match=match) as info:
        open_model(path)
    assert str(path) in str(info.value)


def test_truncated_keras_file(tmp_path, models_dir):
    data = (models_dir / "seed_regression.keras").read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated") as info:
        load_keras(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("mangle", ["truncate", "garbage"])
def test_bad_onnx_files(tmp_path, example_models, mangle):
    good = example_models.onnx_file("small_cnn", tmp_path).read_bytes()
    path = tmp_path / f"{mangle}.onnx"
    path.write_bytes(good[: len(good) // 3] if mangle == "truncate" else b"\x08garbage" * 50)
    with pytest.raises(ModelFileError) as info:
        load_onnx(path)
    assert str(path) in str(info.value) and "ONNX" in str(info.value)


def test_lambda_layer_needs_unsafe(tmp_path):
    import keras

    inputs = keras.Input((2,), name="x")
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelFileError, match="--unsafe"):
        load_keras(path)
    assert load_keras(path, unsafe=True) is not None
