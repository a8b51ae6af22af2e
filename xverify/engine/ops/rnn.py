"""Kernels: rnn ops."""

from __future__ import annotations

import numpy as np

from xverify.engine.registry import op  # noqa: F401

