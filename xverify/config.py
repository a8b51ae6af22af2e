"""Configuration: per-output tolerances and the ``[tool.xverify]`` table.

A per-output tolerance (``--tolerance "probs=1e-5/1e-4"``, ``tolerances={"probs": (1e-5, 1e-4)}``)
replaces the check's atol/rtol for that output's comparisons (every runtime pair) and its oracle
rows; layers keep the check's own. Names are the ONNX outputs' or, matched by position, the Keras
model's.

``[tool.xverify]`` in the nearest ``pyproject.toml`` that has one (walking up from the current
directory, as ruff does) or in ``--config FILE`` holds the check's options by name; a flag given on
the command line wins over it, and it wins over the defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from xverify.errors import UsageError

# key -> the TOML types it takes; "unsafe" is left out on purpose: a repository's pyproject.toml
# must not be able to let Keras run code stored in a model file.
KEYS: dict[str, tuple[type, ...]] = {
    "atol": (float, int),
    "rtol": (float, int),
    "samples": (int,),
    "seed": (int,),
    "runtimes": (str, list),
    "opset": (int,),
    "oracle": (bool,),
    "layers": (bool,),
    "cache": (bool,),
    "inputs": (str,),
    "max_memory": (str, int),
    "tolerance": (dict,),
}


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


def report_field(atol: float, rtol: float, per_output: dict) -> dict[str, Any]:
    """The report's ``tolerance``: ``per_output`` only when set, so the usual field stays as it was."""
    field: dict[str, Any] = {"atol": atol, "rtol": rtol}
    if per_output:
        field["per_output"] = {name: {"atol": a, "rtol": r} for name, (a, r) in per_output.items()}
    return field


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` at or above ``start`` (the current directory) with ``[tool.xverify]``."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file() and "xverify" in _read(candidate).get("tool", {}):
            return candidate
    return None


def load(path: Path | str | None = None) -> tuple[dict, Path | None]:
    """The configured options and the file they came from: ``path`` (``--config``; its
    ``[tool.xverify]`` table, or the whole file when it has no such table) or the nearest
    ``pyproject.toml`` holding one; ({}, None) when there is none. Values are type-checked;
    relative ``inputs`` paths are taken from the file's directory."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UsageError(
                f"--config {path}: no such file; expected a TOML file with a [tool.xverify] table."
            )
        data = _read(path)
        table = data.get("tool", {}).get("xverify", data if "tool" not in data else None)
        if table is None:
            raise UsageError(f"{path}: has no [tool.xverify] table; add one holding the check's options.")
    else:
        path = find_pyproject()
        if path is None:
            return {}, None
        table = _read(path)["tool"]["xverify"]
    return _checked(table, path), path


def _read(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - the dependency is declared for 3.10 only
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"{path}: is not valid TOML ({exc}); fix the file or pass another --config."
        ) from None


def _checked(table: dict, path: Path) -> dict:
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise UsageError(
            f"{path}: [tool.xverify] has unknown key(s) {unknown}; the valid keys are {sorted(KEYS)}."
        )
    for key, value in table.items():
        kinds = KEYS[key]
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            expected = " or ".join(k.__name__ for k in kinds)
            raise UsageError(
                f"{path}: [tool.xverify] {key} = {value!r}: expected {expected}, found {type(value).__name__}."
            )
    settings = dict(table)
    if "tolerance" in settings:
        try:
            settings["tolerance"] = normalise(settings["tolerance"])
        except UsageError as exc:
            raise UsageError(f"{path}: [tool.xverify] {exc}") from None
    if "inputs" in settings:
        settings["inputs"] = path.parent / settings["inputs"]
    return settings
