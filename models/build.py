"""Rebuild the example models in this folder, deterministically.

    python models/build.py            # writes *.keras (and seed_regression.h5) next to this file

Every model is small enough to commit. Weights come from fixed seeds (or are given literally), so a
rebuild produces the same numbers on the same TensorFlow/Keras versions.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

HERE = Path(__file__).resolve().parent

# The learner's model from the question that started xverify: Dense(16, relu) -> Dense(1).
SEED_KERNEL_1 = [
    -0.10382611,
    0.48899287,
    -0.36912352,
    -0.11604425,
    0.03658517,
    0.546786,
    -0.0094437,
    0.5393126,
    -0.36325318,
    -0.20389882,
    -0.00112574,
    -0.39811927,
    -0.25433052,
    -0.16315842,
    0.6172162,
    -0.47300738,
]
SEED_BIAS_1 = [
    0,
    1.1705374,
    0,
    0,
    -0.41323203,
    0.97515434,
    0,
    0.99699414,
    0,
    0,
    -0.2316811,
    0,
    0,
    0,
    1.4638424,
    0,
]
SEED_KERNEL_2 = [
    -0.30404267,
    0.91265625,
    0.3578334,
    -0.23462006,
    -0.33843294,
    1.080244,
    -0.5933689,
    1.0348322,
    0.47716653,
    0.18852347,
    -0.21219982,
    0.45529807,
    0.39576346,
    -0.05013525,
    0.67550814,
    -0.19761673,
]
SEED_BIAS_2 = [0.7426254]


def regression_model():
    import keras

    inputs = keras.Input((1,), name="x")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    output = keras.layers.Dense(1, name="output")(hidden)
    return keras.Model(inputs, output, name="regression")


def seed_regression():
    model = regression_model()
    model.set_weights(seed_weights())
    return model


def seed_weights() -> list:
    """The seed model's weights in get_weights() order: kernel 1x16, bias 16, kernel 16x1, bias 1."""
    return [
        np.array([SEED_KERNEL_1], np.float32),
        np.array(SEED_BIAS_1, np.float32),
        np.array(SEED_KERNEL_2, np.float32).reshape(16, 1),
        np.array(SEED_BIAS_2, np.float32),
    ]


def learner_sequential(form: str = "input_dim", build: bool = True):
    """The question's model written as the learner wrote it, with the seed model's weights.

    Args:
        form: "input_dim" (``Dense(16, activation='relu', input_dim=1)``, the question's words),
            "input_shape" (``input_shape=(1,)``), "input" (a leading ``keras.Input((1,))``) or
            "none" (no input shape: the model is built by ``model.build`` or its first call).
        build: for form "none", build the model (needed to set weights); False leaves it unbuilt
            and without the seed weights.
    """
    import keras

    first = {"input_dim": {"input_dim": 1}, "input_shape": {"input_shape": (1,)}}.get(form, {})
    layers = [keras.layers.Dense(16, activation="relu", **first), keras.layers.Dense(1, activation="linear")]
    model = keras.Sequential(([keras.Input((1,))] if form == "input" else []) + layers)
    if form == "none" and not build:
        return model
    if form == "none":
        model.build((None, 1))
    model.set_weights(seed_weights())
    return model


def trained_regression():
    """The same architecture trained on y = 2x + 5 for x = 0..99 until predictions are close."""
    import keras

    keras.utils.set_random_seed(0)
    model = regression_model()
    x = np.arange(100, dtype=np.float32).reshape(-1, 1)
    y = 2 * x + 5
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    model.fit(x, y, epochs=600, batch_size=100, verbose=0)
    error = float(np.abs(model.predict(x, verbose=0) - y).max())
    if error > 0.5:
        raise SystemExit(f"trained_regression did not converge: max error {error:.3f}")
    return model


def small_cnn():
    """Conv -> BatchNorm -> ReLU -> pool, twice, -> Dense softmax; non-zero biases and BN statistics."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="valid", activation="relu", name="conv2")(x)
    x = keras.layers.AveragePooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.25, name="dropout")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs, name="small_cnn")
    _randomize_biases_and_stats(model, np.random.default_rng(1))
    return model


def text_lstm():
    """Embedding(100, 8) -> LSTM(16) -> Dense(1, sigmoid): integer token inputs."""
    import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input((12,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(100, 8, name="embedding")(inputs)
    x = keras.layers.LSTM(16, name="lstm")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="score")(x)
    model = keras.Model(inputs, outputs, name="text_lstm")
    _randomize_biases_and_stats(model, np.random.default_rng(2))
    return model


def _randomize_biases_and_stats(model, rng):
    """Fresh models have zero biases and identity BatchNorm: make every parameter matter."""
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = weights
            weights = [
                rng.uniform(0.5, 1.5, gamma.shape),
                rng.normal(0, 0.2, beta.shape),
                rng.normal(0, 0.2, mean.shape),
                rng.uniform(0.5, 2.0, var.shape),
            ]
        else:
            weights = [w if w.ndim > 1 else rng.normal(0, 0.1, w.shape) for w in weights]
        layer.set_weights([np.asarray(w, np.float32) for w in weights])


MODELS = {
    "seed_regression": seed_regression,
    "learner_sequential": learner_sequential,
    "trained_regression": trained_regression,
    "small_cnn": small_cnn,
    "text_lstm": text_lstm,
}


def main(names=None) -> None:
    for name in names or MODELS:
        model = MODELS[name]()
        model.save(HERE / f"{name}.keras")
        if name in ("seed_regression", "learner_sequential"):
            model.save(HERE / f"{name}.h5")  # the legacy format, for the loaders' tests
        print(f"wrote models/{name}.keras")


if __name__ == "__main__":
    main(sys.argv[1:])
