"""Per-output tolerances (``--tolerance "probs=1e-5/1e-4"``, ``tolerances={"probs": (1e-5, 1e-4)}``).

A per-output tolerance replaces the check's atol/rtol for that output's comparisons (every runtime
pair) and its oracle rows; layers keep the check's own. Names are the ONNX outputs' or, matched by
position, the Keras model's.
"""

from __future__ import annotations

from xverify.errors import UsageError


def parse_pair(text: str, where: str) -> tuple[float, float]:
    """``"1e-5/1e-4"`` as (atol, rtol), each checked as ``--atol``/``--rtol`` are."""
    from xverify.check import _tolerance

    parts = str(text).split("/")
    if len(parts) != 2:
        raise UsageError(f"{where} {text!r}: expected ATOL/RTOL, e.g. 1e-5/1e-4.")
    return _tolerance(parts[0].strip(), 0.0, "atol"), _tolerance(parts[1].strip(), 0.0, "rtol")


def parse_flag(text: str) -> tuple[str, tuple[float, float]]:
    """One ``--tolerance NAME=ATOL/RTOL`` flag."""
    name, sep, pair = str(text).partition("=")
    if not sep or not name.strip():
        raise UsageError(f"--tolerance {text!r}: expected NAME=ATOL/RTOL, e.g. probs=1e-5/1e-4.")
    return name.strip(), parse_pair(pair, f"--tolerance {name.strip()}=")


def normalise(tolerances) -> dict[str, tuple[float, float]]:
    """A dict of name -> (atol, rtol) or "ATOL/RTOL", or a list of ``NAME=ATOL/RTOL`` flags."""
    if not tolerances:
        return {}
    if not isinstance(tolerances, dict):
        return dict(parse_flag(flag) for flag in tolerances)
    out = {}
    for name, value in tolerances.items():
        if isinstance(value, str):
            out[str(name)] = parse_pair(value, f"tolerance {name}=")
        elif isinstance(value, (tuple, list)) and len(value) == 2:
            out[str(name)] = parse_pair(f"{value[0]}/{value[1]}", f"tolerance {name}=")
        else:
            raise UsageError(f"tolerance {name}={value!r}: expected (atol, rtol) or 'ATOL/RTOL'.")
    return out


def resolve(tolerances, onnx_model, keras_model=None) -> dict[str, tuple[float, float]]:
    """Per-output tolerances keyed by ONNX output name; an unknown name is exit 2 naming the outputs."""
    wanted = normalise(tolerances)
    if not wanted:
        return {}
    onnx_names = [o.name for o in onnx_model.graph.output]
    keras_names = list(getattr(keras_model, "output_names", None) or [])
    by_keras = dict(zip(keras_names, onnx_names)) if len(keras_names) == len(onnx_names) else {}
    resolved = {}
    for name, pair in wanted.items():
        target = name if name in onnx_names else by_keras.get(name)
        if target is None:
            known = sorted(set(onnx_names) | set(by_keras))
            raise UsageError(
                f"--tolerance {name}: the model has no output {name!r}; its outputs are {known}. "
                "Name one of them."
            )
        resolved[target] = pair
    return resolved


def report_field(atol: float, rtol: float, per_output: dict) -> dict:
    """The report's ``tolerance``: ``per_output`` only when set, so the usual field stays as it was."""
    field = {"atol": atol, "rtol": rtol}
    if per_output:
        field["per_output"] = {name: {"atol": a, "rtol": r} for name, (a, r) in per_output.items()}
    return field
