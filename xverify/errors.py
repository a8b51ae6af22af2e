"""Exceptions raised by xverify.

Every error a user can cause or fix derives from ``XverifyError`` and carries the exit code the CLI
returns for it; anything else escaping xverify is an internal bug and shows a traceback.

    XverifyError                    exit 2: xverify could not do the check
     ├── ModelFileError             missing, truncated, wrong-format or unsafe model file
     ├── ConversionError            tf2onnx failed or left TensorFlow ops unconverted
     ├── UnsupportedOpError         the NumPy engine has no kernel for an op
     ├── InputDataError             --inputs file or values that do not fit the model
     ├── MissingDependencyError     an optional package is not installed
     ├── UsageError                 an argument out of range (--samples 0, --atol nan); also a
     │                              ValueError, so library callers may catch either
     ├── ResourceLimitError         the work would allocate beyond the memory budget (--max-memory)
     └── MismatchError              exit 1: the check ran and found a mismatch
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xverify.report.model import CheckReport


class XverifyError(Exception):
    """Base of every error xverify reports to a user; ``exit_code`` is what the CLI returns."""

    exit_code = 2


class ModelFileError(XverifyError):
    """A model file could not be read: missing, empty, truncated, wrong format or unsafe."""


class ConversionError(XverifyError):
    """The Keras -> ONNX conversion failed or produced a graph that cannot be trusted."""


class UnsupportedOpError(XverifyError):
    """An ONNX op (or an attribute value of one) that the NumPy engine does not implement;
    ``ops`` names the op types when the whole op is missing."""

    def __init__(self, message: str, ops: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.ops = list(ops)


class InputDataError(XverifyError):
    """Input data whose file, names, shapes or dtypes do not fit the model."""


class MissingDependencyError(XverifyError):
    """An optional dependency needed for the requested work is not installed."""


class UsageError(XverifyError, ValueError):
    """An argument whose value is out of range or unknown."""


class ResourceLimitError(XverifyError):
    """A tensor, an input batch or a file's declared contents larger than the memory budget."""


class MismatchError(XverifyError):
    """The check ran and at least one comparison failed; carries the report."""

    exit_code = 1

    def __init__(self, message: str, report: CheckReport | None = None) -> None:
        super().__init__(message)
        self.report = report


def gist(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` in one line, for a message to a user. TensorFlow wraps a traced error as
    "in user code:" followed by a stack; the line that says what went wrong is the last one naming
    an exception type, so that one is kept."""
    import re

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Warning): ", line)]
    if named:
        return named[-1][:limit]
    said = next((line for line in lines if line != "in user code:"), "")
    return f"{type(exc).__name__}: {said}"[:limit] if said else type(exc).__name__
