"""A seeded random Keras model generator: every layer xverify claims to support, in every model form.

``generate(seed)`` returns a ``Generated`` record: the model (random weights, non-zero biases,
BatchNorm statistics calibrated on data so that every layer's output is of order one and a fault is
visible) and how it was built. Forms: Sequential with an ``Input``, Sequential with ``input_shape=``
(or ``input_dim=``), functional with several inputs and outputs, a layer shared by two branches and
a layer reused in a chain, models nested in models (two deep), and masking (``Embedding(mask_zero=
True)`` or ``Masking`` before a recurrent layer). Shapes are drawn to include size-1, equal
("square", channels equal to width too) and odd dimensions, which is where layouts get ambiguous.

A chain is a list of layer factories drawn by the kind of tensor it reads (vec: (B, F), seq: (B, T,
F), img: (B, H, W, C), vol: (B, D, H, W, C)); each factory sees the current shape and returns fresh
layers, so the same chain can be instantiated twice (a functional probe, then a Sequential).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORMS = ("sequential_input", "sequential_input_shape", "functional_multi", "shared", "nested", "masking")
_DIMS = (1, 2, 3, 4, 5, 6, 7)
_ACTIVATIONS = (
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "silu",
    "sigmoid",
    "hard_sigmoid",
    "tanh",
    "softmax",
    "softplus",
    "softsign",
    "linear",
)


@dataclass
class Generated:
    """One generated model and how it was made (the scoreboard prints ``form`` and ``layers``)."""

    seed: int
    form: str
    model: object
    layer_classes: list[str] = field(default_factory=list)


class _Namer:
    def __init__(self):
        self.count = 0

    def __call__(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"


def _kind(shape) -> str:
    return {1: "vec", 2: "seq", 3: "img", 4: "vol"}[len(shape)]


# ---- blocks: (rng, shape, name) -> list of layers -----------------------------------------------


def _dense(L, rng, shape, name):
    return [
        L.Dense(
            int(rng.choice((1, 3, 4, shape[-1], 6))),
            name=name("dense"),
            activation=str(rng.choice(_ACTIVATIONS)),
            use_bias=bool(rng.random() < 0.85),
        )
    ]


def _norm(L, rng, shape, name):
    choice = rng.integers(4)
    if choice == 0:
        return [L.BatchNormalization(name=name("bn"))]
    if choice == 1:
        return [L.LayerNormalization(name=name("ln"), center=bool(rng.random() < 0.8))]
    if choice == 2:
        return [L.UnitNormalization(name=name("unitnorm"))]
    groups = [g for g in (1, 2, 3, shape[-1]) if shape[-1] % g == 0]
    if len(shape) < 2:
        return [L.BatchNormalization(name=name("bn"))]
    return [L.GroupNormalization(groups=int(rng.choice(groups)), name=name("gn"))]


def _activation_layer(L, rng, shape, name):
    choice = rng.integers(7)
    return [
        [
            L.Activation(str(rng.choice(_ACTIVATIONS)), name=name("act")),
            L.ReLU(max_value=float(rng.choice((1.0, 6.0))), name=name("relu")),
            L.LeakyReLU(negative_slope=0.2, name=name("leaky")),
            L.ELU(alpha=0.5, name=name("elu")),
            L.PReLU(name=name("prelu")),
            L.Softmax(name=name("softmax")),
            L.Dropout(0.3, name=name("dropout")),
        ][choice]
    ]


def _rescale(L, rng, shape, name):
    return [
        L.Rescaling(float(rng.uniform(0.5, 2)), offset=float(rng.uniform(-0.5, 0.5)), name=name("rescale"))
    ]


def _vec_to_seq(L, rng, shape, name):
    f = shape[-1]
    t = int(rng.choice([d for d in (1, 2, 3, f) if f % d == 0]))
    return [L.Reshape((t, f // t), name=name("reshape"))]


def _vec_to_img(L, rng, shape, name):
    side = int(rng.choice((1, 2, 3)))
    return [L.Dense(side * side * 2, name=name("dense")), L.Reshape((side, side, 2), name=name("reshape"))]


def _conv1d(L, rng, shape, name):
    k = int(min(rng.choice((1, 2, 3)), shape[0])) if rng.random() < 0.5 else 1
    pad = "same" if rng.random() < 0.5 else "valid"
    return [
        L.Conv1D(
            int(rng.choice((1, 2, 3, 5))),
            k,
            padding=pad,
            name=name("conv1d"),
            activation=str(rng.choice(_ACTIVATIONS)),
        )
    ]


def _pool1d(L, rng, shape, name):
    if shape[0] < 2:
        return [L.GlobalMaxPooling1D(name=name("gmp1d"))]
    cls = L.MaxPooling1D if rng.random() < 0.5 else L.AveragePooling1D
    return [cls(2, padding=str(rng.choice(("same", "valid"))), name=name("pool1d"))]


def _global1d(L, rng, shape, name):
    cls = L.GlobalAveragePooling1D if rng.random() < 0.5 else L.GlobalMaxPooling1D
    return [cls(name=name("gp1d"))] if rng.random() < 0.7 else [L.Flatten(name=name("flatten"))]


def _rnn(L, rng, shape, name, return_sequences=None):
    seqs = bool(rng.random() < 0.5) if return_sequences is None else return_sequences
    units = int(rng.choice((1, 2, 3, 4)))
    cls = [L.LSTM, L.GRU, L.SimpleRNN][rng.integers(3)]
    bidirectional = rng.random() < 0.3
    kwargs = {"go_backwards": bool(rng.random() < 0.3) and not bidirectional}
    if cls is L.GRU:
        kwargs["reset_after"] = bool(rng.random() < 0.7)
    if bidirectional:
        merge = str(rng.choice(("concat", "sum", "ave", "mul")))
        return [
            L.Bidirectional(cls(units, return_sequences=seqs, **kwargs), merge_mode=merge, name=name("bi"))
        ]
    return [cls(units, return_sequences=seqs, name=name(cls.__name__.lower()), **kwargs)]


def _permute_seq(L, rng, shape, name):
    return [L.Permute((2, 1), name=name("permute"))]


def _seq_dense(L, rng, shape, name):
    return _dense(L, rng, shape, name)


def _conv2d(L, rng, shape, name):
    h, w, c = shape
    k = int(rng.choice([d for d in (1, 2, 3) if d <= min(h, w)]))
    pad = str(rng.choice(("same", "valid")))
    stride = int(rng.choice((1, 2))) if min(h, w) >= 3 else 1
    choice = rng.integers(5)
    act = str(rng.choice(_ACTIVATIONS))
    if choice == 0:
        return [
            L.Conv2D(
                int(rng.choice((1, 2, 3, c, w))),
                k,
                strides=stride,
                padding=pad,
                activation=act,
                use_bias=bool(rng.random() < 0.8),
                name=name("conv"),
            )
        ]
    if choice == 1:
        return [
            L.DepthwiseConv2D(
                k,
                depth_multiplier=int(rng.choice((1, 2))),
                padding=pad,
                strides=stride,
                name=name("depthwise"),
            )
        ]
    if choice == 2:
        return [
            L.SeparableConv2D(
                int(rng.choice((1, 3, 4))), k, padding=pad, activation=act, name=name("separable")
            )
        ]
    if choice == 3:
        return [
            L.Conv2DTranspose(int(rng.choice((1, 2, 3))), k, strides=stride, padding=pad, name=name("deconv"))
        ]
    groups = int(rng.choice([g for g in (1, 2, 3) if c % g == 0]))
    return [L.Conv2D(groups * int(rng.choice((1, 2))), k, groups=groups, padding=pad, name=name("gconv"))]


def _pool2d(L, rng, shape, name):
    h, w, _ = shape
    choice = rng.integers(5)
    if choice == 0 and min(h, w) >= 2:
        cls = L.MaxPooling2D if rng.random() < 0.5 else L.AveragePooling2D
        return [cls(2, padding=str(rng.choice(("same", "valid"))), name=name("pool"))]
    if choice == 1:
        return [
            L.UpSampling2D(
                int(rng.choice((1, 2))),
                name=name("up"),
                interpolation=str(rng.choice(("nearest", "bilinear"))),
            )
        ]
    if choice == 2:
        return [L.ZeroPadding2D(((int(rng.integers(2)), 1), (1, int(rng.integers(2)))), name=name("pad"))]
    if choice == 3 and min(h, w) >= 3:
        return [L.Cropping2D(((1, 0), (0, 1)), name=name("crop"))]
    return [L.Permute(tuple(int(a) for a in rng.permutation(3) + 1), name=name("permute"))]


def _img_out(L, rng, shape, name):
    choice = rng.integers(3)
    if choice == 0:
        return [L.GlobalAveragePooling2D(name=name("gap"))]
    if choice == 1:
        return [L.GlobalMaxPooling2D(name=name("gmp"))]
    return [L.Flatten(name=name("flatten"))]


def _img_to_seq(L, rng, shape, name):
    h, w, c = shape
    return [L.Reshape((h, w * c), name=name("reshape"))]


def _conv3d(L, rng, shape, name):
    k = int(min(2, *shape[:3]))
    return [
        L.Conv3D(
            int(rng.choice((1, 2, 3))), k, padding=str(rng.choice(("same", "valid"))), name=name("conv3d")
        )
    ]


_BLOCKS = {
    "vec": [_dense, _dense, _norm, _activation_layer, _rescale, _vec_to_seq, _vec_to_img],
    "seq": [_seq_dense, _conv1d, _pool1d, _rnn, _norm, _permute_seq, _activation_layer, _global1d],
    "img": [_conv2d, _conv2d, _pool2d, _norm, _activation_layer, _img_out, _img_to_seq],
    "vol": [_conv3d, _conv3d],
}
_TO_VEC = {
    "seq": _global1d,
    "img": _img_out,
    "vol": lambda L, rng, shape, name: [L.Flatten(name=name("flatten"))],
}
