"""The engine's kernels, one module per op family; importing this package registers them all."""

from xverify.engine.ops import (  # noqa: F401
    control,
    conv,
    elementwise,
    nn,
    pool,
    reduce,
    resize,
    rnn,
    shape,
)
