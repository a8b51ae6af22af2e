"""LSTM, GRU and RNN kernels against ONNX Runtime, through ``check_op``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.engine.opcheck import check_op
from xverify.errors import UnsupportedOpError

rng = np.random.default_rng(0)
TOL = dict(atol=1e-5, rtol=1e-4)
SEQ, BATCH, INP, HID = 5, 3, 4, 3
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
N_OUT = {"LSTM": 3, "GRU": 2, "RNN": 2}


def randn(*shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def rnn_inputs(op_type, num_dir=1, bias=True, lens=False, init=False, peep=False):
    """The op's inputs in ONNX order (None where omitted) for SEQ x BATCH x INP -> HID, layout 0."""
    g = GATES[op_type]
    x = randn(SEQ, BATCH, INP)
    state = (num_dir, BATCH, HID)
    inputs = [
        x,
        randn(num_dir, g * HID, INP),
        randn(num_dir, g * HID, HID),
        randn(num_dir, 2 * g * HID) if bias else None,
        np.array([5, 2, 4], dtype=np.int32) if lens else None,
        randn(*state) if init else None,
    ]
    if op_type == "LSTM":
        inputs += [randn(*state) if init else None, randn(num_dir, 3 * HID) if peep else None]
    while inputs[-1] is None:
        inputs.pop()
    return inputs


def check(op_type, attrs=None, **kwargs):
    num_dir = 2 if (attrs or {}).get("direction") == "bidirectional" else 1
    inputs = rnn_inputs(op_type, num_dir, **kwargs)
    check_layouts(op_type, inputs, {"hidden_size": HID, **(attrs or {})})


def check_layouts(op_type, inputs, attrs):
    """check_op in layout 0; for layout=1 (which ONNX Runtime refuses), check layout 0 against
    ONNX Runtime and the layout-1 kernel against that on batch-major (transposed) tensors."""
    layout = attrs.get("layout", 0)
    want = check_op(op_type, inputs, {**attrs, "layout": 0}, n_outputs=N_OUT[op_type], **TOL)
    if layout == 0:
        return
    from xverify.engine import OPS

    batch_major = [
        a.transpose(1, 0, 2) if a is not None and i in (0, 5, 6) else a for i, a in enumerate(inputs)
    ]
    got = OPS[op_type].kernel(*batch_major, **attrs)
    np.testing.assert_allclose(got[0], want[0].transpose(2, 0, 1, 3), **TOL)
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, w.transpose(1, 0, 2), **TOL)


@pytest.mark.parametrize("op_type", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize(
    "attrs, kwargs",
    [
        ({}, {}),
        ({}, {"bias": False}),
        ({"direction": "reverse"}, {}),
        ({"direction": "bidirectional"}, {"init": True}),
        ({}, {"init": True}),
        ({}, {"lens": True}),
        ({"direction": "reverse"}, {"lens": True}),
        ({"direction": "bidirectional"}, {"lens": True, "init": True}),
        ({"layout": 1}, {"init": True}),
        ({"layout": 1, "direction": "bidirectional"}, {"lens": True, "init": True}),
        ({"clip": 0.3}, {}),
    ],
)
def test_recurrent_attributes(op_type, attrs, kwargs):
    check(op_type, attrs, **kwargs)


def test_lstm_peepholes_and_input_forget():
    check("LSTM", {}, peep=True, init=True)
    check("LSTM", {"direction": "bidirectional"}, peep=True, lens=True)
    check("LSTM", {"input_forget": 1}, init=True)


def test_gru_linear_before_reset():
    check("GRU", {"linear_before_reset": 1}, init=True)
    check("GRU", {"linear_before_reset": 1, "direction": "bidirectional"}, lens=True)
    check("GRU", {"linear_before_reset": 1}, bias=False)


ACTS = [
    ("Relu", None, None),
    ("HardSigmoid", 0.3, 0.4),
    ("Affine", 0.5, 0.1),
    ("LeakyRelu", 0.2, None),
    ("ThresholdedRelu", 0.1, None),
    ("ScaledTanh", 1.2, 0.7),
    ("Elu", 0.8, None),
    ("Softsign", None, None),
    ("Softplus", None, None),
    ("Sigmoid", None, None),
    ("Tanh", None, None),
    ("HardSigmoid", None, None),
]


@pytest.mark.parametrize("name, alpha, beta", ACTS)
def test_activations(name, alpha, beta):
    # Each activation as the recurrent op's output function, with its own alpha/beta.
    params = {}
    if alpha is not None:
        params["activation_alpha"] = [alpha]
    if beta is not None:
        params["activation_beta"] = [beta]
    check("RNN", {"activations": [name], **params}, init=True)
    check("GRU", {"activations": ["Sigmoid", name], **params})


def test_activation_parameters_consumed_in_order():
    # alpha/beta go to the activations that take them, in order (Sigmoid/Tanh take none).
    check(
        "LSTM",
        {
            "activations": ["HardSigmoid", "Tanh", "ScaledTanh"] * 2,
            "activation_alpha": [0.3, 0.9, 0.25, 1.1],
            "activation_beta": [0.45, 0.8, 0.5, 1.0],
            "direction": "bidirectional",
        },
        init=True,
    )
    check(
        "GRU",
        {
            "activations": ["Sigmoid", "LeakyRelu", "HardSigmoid", "Elu"],
            "activation_alpha": [0.1, 0.25, 0.9],
            "activation_beta": [0.4],
            "direction": "bidirectional",
        },
    )


def test_unsupported_values_are_named():
    from xverify.engine.ops.rnn import gru, lstm

    x, w, r = rnn_inputs("GRU")[:3]
    with pytest.raises(UnsupportedOpError, match="direction='sideways'"):
        gru(x, w, r, direction="sideways")
    with pytest.raises(UnsupportedOpError, match="activation 'Swish'"):
        gru(x, w, r, activations=["Sigmoid", "Swish"])
    with pytest.raises(UnsupportedOpError, match="layout=2"):
        lstm(*rnn_inputs("LSTM")[:3], layout=2)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    op_type=st.sampled_from(["LSTM", "GRU"]),
    seq=st.integers(1, 6),
    batch=st.integers(1, 4),
    inp=st.integers(1, 5),
    hid=st.integers(1, 5),
    direction=st.sampled_from(["forward", "reverse", "bidirectional"]),
    layout=st.integers(0, 1),
    lens=st.booleans(),
    init=st.booleans(),
    extra=st.booleans(),
)
def test_recurrent_property(op_type, seq, batch, inp, hid, direction, layout, lens, init, extra):
    r = np.random.default_rng(seq * 1000 + batch * 100 + inp * 10 + hid)
    g, nd = GATES[op_type], 2 if direction == "bidirectional" else 1

    def rn(*shape):
        return (r.standard_normal(shape) * 0.5).astype(np.float32)

    state = (nd, batch, hid)
    inputs = [
        rn(seq, batch, inp),
        rn(nd, g * hid, inp),
        rn(nd, g * hid, hid),
        rn(nd, 2 * g * hid),
        r.integers(1, seq + 1, batch).astype(np.int32) if lens else None,
        rn(*state) if init else None,
    ]
    attrs = {"hidden_size": hid, "direction": direction, "layout": layout}
    if op_type == "LSTM":
        inputs += [rn(*state) if init else None, rn(nd, 3 * hid) if extra else None]
    else:
        attrs["linear_before_reset"] = int(extra)
    while inputs[-1] is None:
        inputs.pop()
    check_layouts(op_type, inputs, attrs)
