"""The three witnesses, one contract: ``run(feeds, taps=()) -> {name: ndarray}``.

Each runtime imports its heavy library when it is built, never at ``import xverify``.
"""

from xverify.runtimes.numpy_rt import NumpyRuntime
from xverify.runtimes.onnxruntime_rt import OnnxRuntime
from xverify.runtimes.tensorflow_rt import SavedModelRuntime, TensorflowRuntime

RUNTIMES = ("numpy", "onnxruntime", "tensorflow")

__all__ = ["RUNTIMES", "NumpyRuntime", "OnnxRuntime", "SavedModelRuntime", "TensorflowRuntime"]
