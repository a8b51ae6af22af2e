"""The engine's kernels, one module per op family; importing this package registers them all."""

from xverify.engine.ops import (  # noqa: F401
    bitwise,
    control,
    conv,
    deform,
    detection,
    detection_roi,
    elementwise,
    grid,
    nn,
    normalization,
    pool,
    quantize,
    reduce,
    resize,
    rnn,
    selection,
    sequence,
    shape,
    signal,
    transformer,
)
