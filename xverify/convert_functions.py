"""Function calls tf2onnx leaves in the graph, and the one message that refuses them.

tf2onnx inlines TensorFlow functions while it freezes the graph, but a call it meets afterwards
stays a ``StatefulPartitionedCall`` / ``PartitionedCall`` node that no ONNX runtime knows: Keras 3
traces a grouped ``Conv2D`` (``groups`` > 1, ConvNeXt's depthwise convolutions) through such a call
(TensorFlow has no grouped-convolution kernel on CPU and Keras wraps one in a function). Every
grouped layer then leaves one such node (onnx/tensorflow-onnx#2099 for grouped Conv2D, #2347 for
ConvNeXt's depthwise convolutions: both open for tf2onnx 1.17). Inlining is not done here yet; the
refusal names the cause once, with the count and a few layers, instead of one sentence per node.
"""

from __future__ import annotations

FUNCTION_CALLS = ("StatefulPartitionedCall", "PartitionedCall")


def unconverted_message(bad_nodes, layers, log_text: str, layer_index_of) -> str:
    """One exit-2 message for the unconverted nodes: each op type once, with its count and up to
    three of its Keras layers (and their classes)."""
    by_op: dict[str, list[str]] = {}
    for node in bad_nodes:
        index = layer_index_of(node.name)
        where = (
            f"{layers[index].name!r} ({type(layers[index]).__name__})"
            if index is not None and index < len(layers)
            else f"node {node.name!r}"
        )
        by_op.setdefault(node.op_type, []).append(where)
    parts = []
    for op, wheres in by_op.items():
        unique = list(dict.fromkeys(wheres))
        more = f" and {len(unique) - 3} more" if len(unique) > 3 else ""
        count = len(wheres)
        parts.append(
            f"TensorFlow op {op!r} ({count} node{'s' if count > 1 else ''}) in Keras "
            f"layer{'s' if len(unique) > 1 else ''} {', '.join(unique[:3])}{more}"
        )
    advice = "Replace the layer with a supported equivalent, or convert with a newer tf2onnx."
    if any(op in FUNCTION_CALLS for op in by_op):
        advice = (
            "tf2onnx left a TensorFlow function call un-inlined (Keras traces a Conv2D with "
            "groups > 1 through one); use DepthwiseConv2D for depthwise convolutions, or "
            "groups=1, and convert again."
        )
    reason = next(
        (
            line.strip()
            for line in log_text.splitlines()
            if "not supported" in line.lower() and not any(op in line for op in FUNCTION_CALLS)
        ),
        "",
    )
    return (
        "tf2onnx left TensorFlow ops unconverted, so no runtime can run the ONNX model: "
        f"{'; '.join(parts)}. {reason + ' ' if reason else ''}{advice}"
    )


def plain_grouped_convolutions():
    """While tracing for tf2onnx, a grouped convolution is traced as a plain ``Conv2D`` op instead
    of Keras' XLA-compiled function (TensorFlow's CPU kernel lacks groups, so Keras 3 wraps one in
    ``tf.function(jit_compile=True)``; tf2onnx keeps that call as a ``StatefulPartitionedCall``).
    The graph is only traced and converted, never run, and tf2onnx's Conv handler sets the ONNX
    ``group`` from the kernel's input depth (onnx/tensorflow-onnx#1434, fixed by #1435)."""
    import contextlib

    from keras.src.backend.tensorflow import nn

    original = nn.conv

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        import tensorflow as tf

        rank = len(inputs.shape)
        last = nn.backend.standardize_data_format(data_format) == "channels_last"
        if not last or inputs.shape[-1] == kernel.shape[-2]:
            return original(inputs, kernel, strides, padding, data_format, dilation_rate)
        return tf.nn.convolution(
            inputs,
            kernel,
            strides,
            padding.upper(),
            data_format=nn._convert_data_format(data_format, rank),
            dilations=dilation_rate,
        )

    @contextlib.contextmanager
    def patched():
        nn.conv = conv
        try:
            yield
        finally:
            nn.conv = original

    return patched()
