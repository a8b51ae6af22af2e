"""Golden bundles: a passing check recorded with TensorFlow (``snapshot``), and an ONNX file
checked against that record where TensorFlow is not installed (``check_golden``).

``bundle.py`` owns the format on disk (manifest with a format version and every file's sha256);
``snapshot.py`` makes a bundle (needs the ``keras`` extra); ``against.py`` reads one (needs only
NumPy, ONNX and ONNX Runtime).
"""

from xverify.golden.against import check_golden
from xverify.golden.bundle import FORMAT, Bundle
from xverify.golden.snapshot import DEFAULT_MAX_SIZE, Snapshot, snapshot

__all__ = ["DEFAULT_MAX_SIZE", "FORMAT", "Bundle", "Snapshot", "check_golden", "snapshot"]
