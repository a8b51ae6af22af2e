"""ZOO.md from the zoo's rows: the targets first, then what each row found."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path


def _rows(path: Path) -> list[dict]:
    """The rows of one results file; an application checked twice (two runners over the catalogue)
    counts once, its first row."""
    rows = [json.loads(line) for line in path.open() if line.strip()] if path.exists() else []
    seen, out = set(), []
    for row in rows:
        key = row.get("model") or row.get("seed")
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def cause(message: str) -> str:
    """A refusal's cause: its message with names, numbers and shapes blanked, so that the same
    cause met in many models is counted once."""
    text = re.sub(r"'[^']*'", "'…'", message or "")
    text = re.sub(r"\([A-Za-z0-9_]+\)", "(…)", text)
    text = re.sub(r"(?<![A-Za-z])\d+(\.\d+)?(e[-+]?\d+)?", "N", text)
    return text[:260]


def _repeats(message: str) -> bool:
    """A message that says the same sentence more than once (one line per layer, say)."""
    parts = [cause(p) for p in re.split(r"[;.] ", message or "") if len(p) > 20]
    return len(parts) != len(set(parts))


def _gib(n) -> str:
    return f"{(n or 0) / 2**30:.2f}"


def wrong_conversion(row) -> bool:
    """An exit 1 whose graph outputs differ between TensorFlow and the ONNX runtimes: the ONNX
    model computes something else (a converter fault found), not a false alarm. A false alarm is
    an exit 1 whose outputs all agree (a layer or weight compared wrongly)."""
    lines = row.get("failures", [])
    return any(" vs tensorflow on '" in line for line in lines) and not any(
        " vs onnxruntime on '" in line for line in lines
    )


def _summary(apps, gen) -> list[str]:
    clean = apps + gen
    internal = [r for r in clean if r.get("verdict") in ("internal error", "crash") or r.get("internal")]
    found = [r for r in clean if r.get("exit") == 1 and wrong_conversion(r)]
    alarms = [r for r in clean if r.get("exit") == 1 and not wrong_conversion(r)]
    refusals = [r for r in clean if r.get("verdict") == "refused" and not r.get("internal")]
    killed = [r for r in clean if str(r.get("verdict", "")).startswith("killed")]
    faults = [r["fault"] for r in gen if r.get("fault", {}).get("injected")]
    detected = sum(f["detected"] for f in faults)
    localized = sum(bool(f.get("localized")) for f in faults)
    pct = lambda a, b: f"{100 * a / b:.1f}%" if b else "n/a"  # noqa: E731
    return [
        "| target | goal | result |",
        "|---|---|---|",
        f"| internal errors (incl. crashes) | 0 | {len(internal)} |",
        f"| false alarms (exit 1, the outputs agree) | 0 | {len(alarms)} |",
        f"| wrong conversions found (outputs differ from TensorFlow, ONNX runtimes agree) | - | "
        f"{len(found)} (seeds {', '.join(str(r.get('seed', r.get('model'))) for r in found)}) |",
        f"| refusals: exit 2 with one message | all | {len(refusals)} refusals, "
        f"{sum(_repeats(r.get('message', '')) for r in refusals)} with a repeated message, "
        f"{len({cause(r.get('message', '')) for r in refusals})} distinct causes |",
        f"| killed by the watchdog (10 GiB / timeout) | - | {len(killed)} |",
        f"| injected faults detected | 100% | {detected}/{len(faults)} = {pct(detected, len(faults))} |",
        f"| injected faults localized to their layer | >= 95% | {localized}/{len(faults)} = "
        f"{pct(localized, len(faults))} |",
        f"| generated models checked | >= 2,000 | {len(gen)} |",
        f"| keras.applications constructors | all | {len(apps)} |",
    ]


def _causes(rows) -> list[str]:
    counts = Counter(
        cause(r.get("message") or f"{r.get('verdict')} (exit {r.get('exit')})")
        for r in rows
        if r.get("verdict") in ("refused", "internal error", "crash")
        or str(r.get("verdict", "")).startswith("killed")
    )
    lines = ["| count | cause (names and numbers blanked) |", "|---|---|"]
    return lines + [f"| {n} | {c.replace('|', '/')} |" for c, n in counts.most_common()]


def _app_table(apps) -> list[str]:
    lines = [
        "| model | input | params | exit | verdict | seconds | peak RSS GiB | message |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in apps:
        lines.append(
            f"| {r['model']} | {r.get('input', '')} | {r.get('params', '')} | "
            f"{r.get('exit')} | {r['verdict']} | {r.get('seconds', '')} | "
            f"{_gib(r.get('peak_rss'))} | {(r.get('message') or '')[:200].replace('|', '/')} |"
        )
    return lines


def _gen_tables(gen) -> list[str]:
    forms = Counter((r.get("form"), r.get("verdict")) for r in gen)
    lines = ["| form | pass | mismatch | refused | internal/crash |", "|---|---|---|---|---|"]
    for form in sorted({f for f, _ in forms if f}):
        lines.append(
            f"| {form} | {forms[form, 'pass']} | {forms[form, 'mismatch']} | "
            f"{forms[form, 'refused']} | "
            f"{forms[form, 'internal error'] + forms[form, 'crash']} |"
        )
    faults = Counter(
        (r["fault"]["kind"], r["fault"].get("detected"), bool(r["fault"].get("localized")))
        for r in gen
        if r.get("fault", {}).get("injected")
    )
    lines += ["", "| fault | injected | detected | localized |", "|---|---|---|---|"]
    for kind in ("weight", "bias", "activation", "axis"):
        total = sum(n for (k, _, _), n in faults.items() if k == kind)
        det = sum(n for (k, d, _), n in faults.items() if k == kind and d)
        loc = sum(n for (k, _, lo), n in faults.items() if k == kind and lo)
        lines.append(f"| {kind} | {total} | {det} | {loc} |")
    skipped = sum(1 for r in gen if r.get("fault") and not r["fault"].get("injected"))
    lines.append(f"\nModels with no place for their fault kind (no bias, no activation): {skipped}.")
    layers = Counter(c for r in gen for c in r.get("layers", []))
    lines += [
        "",
        "Layer classes in the generated models (models containing each):",
        "",
        ", ".join(f"{c} {n}" for c, n in sorted(layers.items())),
    ]
    secs = sorted(r["seconds"] for r in gen if r.get("seconds"))
    if secs:
        lines.append(
            f"\nCheck time per clean model (convert + check, worker warm): median "
            f"{secs[len(secs) // 2]:.2f} s, max {secs[-1]:.1f} s; worker peak RSS max "
            f"{_gib(max(r.get('peak_rss', 0) for r in gen))} GiB."
        )
    return lines


def _failures(gen) -> list[str]:
    bad = [r for r in gen if r.get("verdict") not in ("pass", "refused")]
    missed = [
        r
        for r in gen
        if r.get("fault", {}).get("injected") and not (r["fault"]["detected"] and r["fault"].get("localized"))
    ]
    lines = ["| seed | form | verdict | what |", "|---|---|---|---|"]
    for r in bad[:40]:
        what = (r.get("message") or "; ".join(r.get("failures", [])))[:220].replace("|", "/")
        lines.append(f"| {r['seed']} | {r.get('form')} | {r['verdict']} | {what} |")
    for r in missed[:40]:
        f = r["fault"]
        lines.append(
            f"| {r['seed']} | {r.get('form')} | fault {f['kind']} "
            f"{'missed' if not f['detected'] else 'not localized'} | {f['detail']} in "
            f"{f['layer']}; first divergence {f.get('first_divergence')} |"
        )
    return lines


def render(apps_path: Path, gen_path: Path, commands: list[str]) -> str:
    """The whole of ZOO.md; ``commands`` are the runs that wrote the rows (resumed runs append)."""
    apps, gen = _rows(apps_path), _rows(gen_path)
    parts = [
        "# The zoo: xverify on models it was not built on",
        "",
        "Regenerated by `benchmarks/zoo.py`; do not edit by hand. The rows were made by:",
        "",
        *[f"    {c}" for c in commands],
        "",
        "## Targets",
        "",
        *_summary(apps, gen),
        "",
        "## Causes of refusals and errors (each once, with a count)",
        "",
        *_causes(apps + gen),
        "",
        "## keras.applications (`xverify check MODEL --samples 2`)",
        "",
        *_app_table(apps),
        "",
        "## Generated models",
        "",
        *_gen_tables(gen),
        "",
        "## Generated models that failed, faults missed or not localized (first 40 each)",
        "",
        *_failures(gen),
        "",
    ]
    return "\n".join(parts)
