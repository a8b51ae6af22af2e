"""The model forms of the zoo generator: chains of random blocks (``zoo_models``) put together as
Sequential models, functional models with several inputs and outputs, shared and reused layers,
nested models and masked sequences; then random weights and calibrated BatchNorm statistics."""

from __future__ import annotations

import numpy as np
from zoo_models import _BLOCKS, _TO_VEC, FORMS, Generated, _kind, _Namer

MAX_ELEMENTS = 1500  # per sample and tensor: keeps a model's check well under a second or two


def _shape(rng, kind: str) -> tuple:
    d = lambda: int(rng.choice((1, 2, 3, 4, 5, 6, 7)))  # noqa: E731
    if kind == "vec":
        return (int(rng.choice((1, 2, 3, 5, 6, 8))),)
    if kind == "seq":
        t = d()
        return (t, t if rng.random() < 0.4 else d())  # square (T == F) often
    if kind == "img":
        side = int(rng.choice((1, 2, 3, 4, 5, 6, 7, 8)))
        w = side if rng.random() < 0.6 else d()
        c = w if rng.random() < 0.3 else int(rng.choice((1, 2, 3)))  # C == W: layout ambiguity
        return (side, w, c)
    return (int(rng.choice((2, 3))), 3, int(rng.choice((2, 3))), int(rng.choice((1, 2))))


def _fits(tensor) -> bool:
    dims = tuple(tensor.shape[1:])
    return all(d is not None and d >= 1 for d in dims) and int(np.prod(dims)) <= MAX_ELEMENTS


def chain(keras, rng, tensor, name, steps: int, *, to_vec: bool = False, kinds=None):
    """Apply ``steps`` random blocks to ``tensor``; returns ``(tensor, layers)``. A block that does
    not fit the shape (a kernel larger than the input, say) is skipped and another drawn."""
    L = keras.layers
    used = []
    attempts = 0
    while steps > 0 and attempts < 4 * steps + 8:
        attempts += 1
        kind = _kind(tuple(tensor.shape[1:]))
        blocks = _BLOCKS[kind]
        block = blocks[rng.integers(len(blocks))]
        new = block(L, rng, tuple(tensor.shape[1:]), name)
        if kinds is not None and _kind_after(keras, new, tensor) not in kinds:
            continue
        out = _apply(new, tensor)
        if out is None or not _fits(out):
            continue
        tensor, used, steps = out, used + new, steps - 1
    if to_vec and _kind(tuple(tensor.shape[1:])) != "vec":
        new = _TO_VEC[_kind(tuple(tensor.shape[1:]))](L, rng, tuple(tensor.shape[1:]), name)
        tensor, used = _apply(new, tensor), used + new
    return tensor, used


def _kind_after(keras, layers, tensor):
    out = _apply([clone(keras, la) for la in layers], keras.Input(tuple(tensor.shape[1:])))
    return None if out is None else _kind(tuple(out.shape[1:]))


def _apply(layers, tensor):
    try:
        for layer in layers:
            tensor = layer(tensor)
    except (ValueError, TypeError, NotImplementedError):
        return None
    return tensor


def clone(keras, layer, **extra):
    """A fresh layer of the same configuration (to build the same chain again)."""
    config = keras.layers.serialize(layer)
    config["config"].update(extra)
    return keras.layers.deserialize(config)


def _sequential(keras, rng, name, with_input: bool):
    kind = str(rng.choice(("vec", "seq", "img", "img", "vol")))
    shape = _shape(rng, kind)
    _probe, layers = chain(keras, rng, keras.Input(shape), name, int(rng.integers(2, 6)))
    if not layers:
        return None
    if with_input:
        return keras.Sequential(
            [keras.Input(shape), *[clone(keras, la) for la in layers]], name=name("sequential")
        )
    first = (
        {"input_dim": shape[0]}
        if kind == "vec" and type(layers[0]).__name__ == "Dense"
        else {"input_shape": shape}
    )
    rest = [clone(keras, la) for la in layers[1:]]
    return keras.Sequential([clone(keras, layers[0], **first), *rest], name=name("sequential"))


def _functional_multi(keras, rng, name):
    L = keras.layers
    inputs, heads = [], []
    for i in range(int(rng.integers(2, 4))):
        kind = str(rng.choice(("vec", "seq", "img")))
        x = keras.Input(_shape(rng, kind), name=f"in_{i}")
        inputs.append(x)
        h, _ = chain(keras, rng, x, name, int(rng.integers(1, 4)))
        heads.append(h)
    vecs = [chain(keras, rng, h, name, 0, to_vec=True)[0] for h in heads]
    width = int(rng.choice((2, 3, 4)))
    projected = [L.Dense(width, name=name("proj"))(v) for v in vecs]
    merge = [L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum][rng.integers(6)]
    pair = projected[:2]
    merged = merge(name=name(merge.__name__.lower()))(pair)
    joined = L.Concatenate(name=name("concat"))([merged, *vecs])
    out_a, _ = chain(keras, rng, joined, name, int(rng.integers(0, 3)), to_vec=True)
    outputs = {
        "out_a": L.Dense(int(rng.choice((1, 3))), name="out_a")(out_a),
        "out_b": L.Dense(2, activation="softmax", name="out_b")(merged),
    }
    if rng.random() < 0.5:  # a hidden tensor of another shape as a third output
        outputs["out_c"] = L.Activation("linear", name="out_c")(heads[-1])
    if rng.random() < 0.5:
        outputs = list(outputs.values())
    return keras.Model(inputs, outputs, name=name("functional"))


def _shared(keras, rng, name):
    L = keras.layers
    kind = str(rng.choice(("vec", "seq", "img")))
    shape = _shape(rng, kind)
    a, b = keras.Input(shape, name="left"), keras.Input(shape, name="right")
    shared = chain(keras, rng, keras.Input(shape), name, 1)[1] or [L.Dense(3, name=name("dense"))]
    ha, hb = _apply(shared, a), _apply(shared, b)  # the same layers on both inputs
    merged = L.Add(name=name("add"))([ha, hb]) if ha is not None and hb is not None else a
    h, _ = chain(keras, rng, merged, name, int(rng.integers(0, 3)))
    width = int(h.shape[-1])
    reused = L.Dense(width, activation="tanh", name=name("reused"))
    h = reused(reused(h))  # one layer applied twice in a row
    h, _ = chain(keras, rng, h, name, 0, to_vec=True)
    return keras.Model([a, b], L.Dense(2, name=name("dense"))(h), name=name("shared"))


def _nested(keras, rng, name):
    kind = str(rng.choice(("vec", "seq", "img")))
    shape = _shape(rng, kind)
    x = keras.Input(shape, name="x")
    h, _ = chain(keras, rng, x, name, int(rng.integers(0, 3)))
    inner_in = keras.Input(tuple(h.shape[1:]))
    _inner_out, inner_layers = chain(keras, rng, inner_in, name, int(rng.integers(1, 4)))
    if not inner_layers:
        return None
    inner = keras.Sequential(
        [keras.Input(tuple(h.shape[1:])), *[clone(keras, la) for la in inner_layers]], name=name("block")
    )
    if rng.random() < 0.4:  # two deep: the Sequential inside a functional sub-model
        sub_in = keras.Input(tuple(h.shape[1:]))
        inner = keras.Model(sub_in, inner(sub_in), name=name("outer_block"))
    h = inner(h)
    h, _ = chain(keras, rng, h, name, int(rng.integers(0, 3)), to_vec=True)
    return keras.Model(x, keras.layers.Dense(3, name=name("dense"))(h), name=name("nested"))


def _masking(keras, rng, name):
    L = keras.layers
    t = int(rng.choice((1, 2, 3, 5, 6)))
    if rng.random() < 0.6:
        x = keras.Input((t,), dtype="int32", name="tokens")
        h = L.Embedding(
            int(rng.choice((3, 4, 6))), int(rng.choice((2, 3, t))), mask_zero=True, name=name("embedding")
        )(x)
    else:
        x = keras.Input((t, int(rng.choice((1, 2, 3)))), name="seq")
        h = L.Masking(mask_value=0.0, name=name("masking"))(x)
    for layer in _BLOCKS_RNN(keras, rng, name, h):
        h = layer(h)
    h, _ = chain(keras, rng, h, name, int(rng.integers(0, 2)), to_vec=True)
    return keras.Model(x, L.Dense(2, name=name("dense"))(h), name=name("masked"))


def _BLOCKS_RNN(keras, rng, name, h):
    from zoo_models import _rnn

    return _rnn(keras.layers, rng, tuple(h.shape[1:]), name)


_BUILDERS = {
    "sequential_input": lambda k, r, n: _sequential(k, r, n, True),
    "sequential_input_shape": lambda k, r, n: _sequential(k, r, n, False),
    "functional_multi": _functional_multi,
    "shared": _shared,
    "nested": _nested,
    "masking": _masking,
}


def generate(seed: int) -> Generated:
    """The model of ``seed``: its form cycles through FORMS, everything else is drawn from the seed."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    form = FORMS[seed % len(FORMS)]
    model = None
    for _ in range(5):  # a draw that leaves nothing to check (no layer fitted) is drawn again
        model = _BUILDERS[form](keras, rng, _Namer())
        if model is not None:
            break
    from xverify.convert import flat_layers

    randomize(keras, model, rng)
    return Generated(seed, form, model, [type(la).__name__ for la in flat_layers(model)])


def randomize(keras, model, rng) -> None:
    """Random weights (biases non-zero, Glorot scale kept), then BatchNorm statistics calibrated on
    data: each BatchNormalization's moving mean and variance become those of its input (times a
    random factor near one), so activations stay of order one through deep chains."""
    from xverify.convert import flat_layers

    for layer in flat_layers(model):
        values = []
        for var, value in zip(layer.weights, layer.get_weights()):
            name = var.name
            if value.dtype.kind != "f":
                new = value
            elif "variance" in name or "gamma" in name:
                new = rng.uniform(0.5, 1.5, value.shape)
            elif "mean" in name or "beta" in name or "alpha" in name:
                new = rng.uniform(-0.5, 0.5, value.shape)
            elif value.ndim <= 1 or "bias" in name:
                new = rng.uniform(-0.3, 0.3, value.shape)
            else:
                new = value + rng.uniform(-0.05, 0.05, value.shape)
            values.append(np.asarray(new, value.dtype))
        if values:
            layer.set_weights(values)
    _calibrate(keras, model, rng)


def _calibrate(keras, model, rng) -> None:
    from xverify.convert import flat_layers

    norms = [la for la in flat_layers(model) if isinstance(la, keras.layers.BatchNormalization)]
    if not norms:
        return
    feeds = [sample_input(rng, t, 16) for t in model.inputs]
    momenta = [la.momentum for la in norms]
    for la in norms:
        la.momentum = 0.0  # one training-mode call sets the moving statistics to the batch's
    model(feeds if len(feeds) > 1 else feeds[0], training=True)
    for la, momentum in zip(norms, momenta):
        la.momentum = momentum
        gamma_beta = la.get_weights()[:-2]
        mean, var = la.get_weights()[-2:]
        la.set_weights(
            [
                *gamma_beta,
                mean + rng.uniform(-0.1, 0.1, mean.shape).astype(mean.dtype),
                (var * rng.uniform(0.8, 1.25, var.shape)).astype(var.dtype),
            ]
        )


def sample_input(rng, tensor, batch: int) -> np.ndarray:
    shape = (batch, *tuple(tensor.shape[1:]))
    if "int" in str(tensor.dtype):
        return rng.integers(0, 3, shape).astype(str(tensor.dtype))
    return rng.standard_normal(shape).astype("float32")
