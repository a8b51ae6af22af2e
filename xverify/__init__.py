"""xverify: prove an exported ONNX model computes what the trained Keras model computes."""

__version__ = "0.1.0"
