"""The ``xverify`` command: each subcommand is a thin call into the library.

Exit codes: 0 everything within tolerance; 1 a mismatch was found; 2 xverify could not do the check.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before any TensorFlow import: keep output clean

import typer
from rich.console import Console

from xverify.errors import XverifyError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Prove an exported ONNX model computes what the Keras model computes.",
)
out = Console()
err = Console(stderr=True)

Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A TOML file whose [tool.xverify] table holds check options (default: the nearest "
        "pyproject.toml that has one). Flags given here win over it.",
        show_default=False,
    ),
]
MaxMemory = Annotated[
    str | None,
    typer.Option(
        "--max-memory",
        help="Memory budget, e.g. 6GiB (default: a quarter of RAM). Files, input batches "
        "and tensors declaring more are refused before anything is allocated.",
        show_default=False,
    ),
]


INPUTS_HELP = (
    "Inputs: .npz (by input name), .npy (one input), .csv (a row per sample; with a header, columns "
    "named after the inputs: x or x_0..x_k), .parquet (the same columns), or a folder of .npy/.npz "
    "shards or of .jpg/.png images (resized to the model's H x W). Folders and tables need the "
    "extras images / tables."
)


def _runtimes_help() -> str:
    from xverify.runtimes import ALL, RUNTIMES

    installed = [n for n, spec in RUNTIMES.items() if spec.installed()]
    absent = [n for n in RUNTIMES if n not in installed]
    return (
        f"Comma-separated runtimes to compare, or {ALL} (every installed one). Installed: "
        f"{', '.join(installed)}"
        + (f"; not installed: {', '.join(absent)}" if absent else "")
        + " (xverify runtimes)."
    )


ReproDir = Annotated[
    Path | None,
    typer.Option(
        "--repro",
        help="When the check fails, write a standalone repro of the first divergence into this new directory.",
        show_default=False,
    ),
]
ModelArg = Annotated[
    Path,
    typer.Argument(help="A .keras/.h5 model, a SavedModel directory or an .onnx file.", show_default=False),
]

# The options several commands share, declared once.
InputsOpt = Annotated[Path | None, typer.Option(help=INPUTS_HELP)]
SamplesOpt = Annotated[int, typer.Option(help="Number of synthetic samples.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the synthetic inputs.")]
AtolOpt = Annotated[float | None, typer.Option(help="Absolute tolerance (default 1e-4).")]
RtolOpt = Annotated[float | None, typer.Option(help="Relative tolerance (default 1e-3).")]


def _version(value: bool) -> None:
    if value:
        from xverify import __version__

        out.print(f"xverify {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print xverify's version and exit."),
    ] = False,
) -> None:
    """Prove an exported ONNX model computes what the Keras model computes."""


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        raise exc
    code = getattr(exc, "exit_code", 2)
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _run(debug: bool, fn, tensorflow: bool = True):
    """Run a command body; user errors become one message and exit 2 (1 for a mismatch)."""
    _quiet_libraries()
    if tensorflow and not debug:
        _import_tensorflow_quietly()
    try:
        return fn()
    except XverifyError as exc:
        _fail(exc, debug)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # a bug in xverify or a library: never exit 1, which means "mismatch"
        if debug:
            raise
        from rich.markup import escape

        err.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
            "This is a bug in xverify or a library it uses, not a verdict on the model; "
            "rerun with --debug for the traceback and report it.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2) from None


def _import_tensorflow_quietly() -> None:
    """TensorFlow's C++ logger prints start-up banners (oneDNN, absl) on fd 2 even at
    TF_CPP_MIN_LOG_LEVEL=3; silence the fd during the import only, so users see xverify's output."""
    try:
        saved = os.dup(2)
    except OSError:
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
                import tf2onnx  # noqa: F401
            except ImportError:
                pass  # reported with a clear message where it is needed
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _quiet_libraries() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("tensorflow", "absl", "tf2onnx", "keras"):
        logging.getLogger(name).setLevel(logging.ERROR)


@app.command()
def check(
    ctx: typer.Context,
    model: ModelArg,
    onnx: Annotated[
        Path | None, typer.Option(help="Check this ONNX file instead of converting MODEL.")
    ] = None,
    inputs: InputsOpt = None,
    samples: SamplesOpt = 16,
    seed: SeedOpt = 0,
    atol: AtolOpt = None,
    rtol: RtolOpt = None,
    tolerance: Annotated[
        list[str] | None,
        typer.Option(
            help="Per-output tolerance NAME=ATOL/RTOL (repeatable), e.g. probs=1e-5/1e-4; NAME an "
            "ONNX or Keras output name. Applies to that output's comparisons and oracle rows.",
            show_default=False,
        ),
    ] = None,
    runtimes: Annotated[str, typer.Option(help=_runtimes_help())] = "numpy,onnxruntime,tensorflow",
    layers: Annotated[
        bool, typer.Option("--layers/--no-layers", help="Compare every layer and name the first divergence.")
    ] = True,
    oracle: Annotated[
        bool, typer.Option("--oracle/--no-oracle", help="Also run the float64 NumPy oracle.")
    ] = True,
    cache: Annotated[
        bool, typer.Option("--cache/--no-cache", help="Reuse the cached conversion of an unchanged model.")
    ] = True,
    opset: Annotated[
        int | None, typer.Option(help="ONNX opset for the conversion (13-18, default 17).")
    ] = None,
    json: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")] = None,
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML report here.")] = None,
    html: Annotated[Path | None, typer.Option(help="Write an HTML report here.")] = None,
    markdown: Annotated[
        Path | None,
        typer.Option(help="Write a Markdown report here (also appended to $GITHUB_STEP_SUMMARY when set)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every weight and layer.")] = False,
    unsafe: Annotated[
        bool,
        typer.Option(
            "--unsafe",
            help="Let Keras run code stored in the model file (Lambda layers). Only for files you trust.",
        ),
    ] = False,
    max_memory: MaxMemory = None,
    golden: Annotated[
        Path | None,
        typer.Option(
            help="Check MODEL (an .onnx file) against this golden bundle (xverify snapshot): its "
            "inputs, tolerances and recorded TensorFlow outputs and layers; no TensorFlow needed.",
            show_default=False,
        ),
    ] = None,
    repro: ReproDir = None,
    config: ConfigFile = None,
    debug: Debug = False,
) -> None:
    """Convert MODEL to ONNX and compare NumPy, ONNX Runtime and TensorFlow on the same inputs.

    Options not given here come from --config FILE or the nearest pyproject.toml's [tool.xverify]."""
    given = dict(locals())

    def body():
        import dataclasses

        import xverify
        from xverify.report.text import render

        options, note = _configured(ctx, config, given)
        inputs, samples, seed, atol, rtol = (
            options[k] for k in ("inputs", "samples", "seed", "atol", "rtol")
        )
        runtimes, layers, oracle, cache, opset = (
            options[k] for k in ("runtimes", "layers", "oracle", "cache", "opset")
        )
        max_memory = options["max_memory"]
        _refuse_overwrite(
            [json, junit, html, markdown, repro], [model, onnx, inputs, golden], directories=[repro]
        )
        if golden is not None and repro is not None:
            from xverify.errors import UsageError

            raise UsageError(
                "--repro needs the Keras model (its layer values are recomputed); it cannot be combined with --golden."
            )
        if golden is not None and tolerance:
            from xverify.errors import UsageError

            raise UsageError("--tolerance is not applied to a --golden check; use --atol/--rtol there.")
        if golden is not None:
            report = _check_golden(
                model, golden, onnx, inputs, atol, rtol, runtimes, layers, oracle, max_memory
            )
        else:
            report = xverify.check(
                model,
                onnx=onnx,
                inputs=inputs,
                samples=samples,
                seed=seed,
                atol=atol,
                rtol=rtol,
                runtimes=runtimes,
                layers=layers,
                oracle=oracle,
                cache=cache,
                opset=opset,
                unsafe=unsafe,
                max_memory=max_memory,
                tolerances=options["tolerance"],
            )
        if note:
            report = dataclasses.replace(report, notes=(*report.notes, note))
        render(report, out, verbose=verbose)
        _write_reports(report, json, junit, html)
        _write_markdown(report, markdown)
        if repro and not report.passed:
            _write_repro(report, repro, model, onnx, inputs, samples, seed, opset, cache, unsafe, max_memory)
        raise typer.Exit(0 if report.passed else 1)

    _run(debug, body, tensorflow=golden is None)


def _configured(ctx: typer.Context, config_file, given: dict) -> tuple[dict, str | None]:
    """The check's options: a flag given on the command line, else the configuration, else the
    default. Returns them and the report's note naming the configuration file used (or None)."""
    from xverify import config

    settings, path = config.load(config_file)
    options = {key: given[key] for key in config.KEYS}
    for key, value in settings.items():
        if key == "tolerance":  # merged per output: a --tolerance flag wins for its own output
            flags = dict(config.normalise(given["tolerance"]))
            options[key] = {**value, **flags}
        # by name: typer may bring its own copy of click's ParameterSource
        elif getattr(ctx.get_parameter_source(key), "name", "DEFAULT") in ("DEFAULT", "DEFAULT_MAP"):
            options[key] = value
    if path is None:
        return options, None
    return options, f"configuration from {path} ({', '.join(sorted(settings)) or 'no options'})"


def _check_golden(model, golden, onnx, inputs, atol, rtol, runtimes, layers, oracle, max_memory):
    """``check MODEL.onnx --golden BUNDLE/``: the bundle holds the inputs and the reference."""
    from xverify.errors import UsageError
    from xverify.golden import check_golden
    from xverify.load import detect_format

    if onnx is not None or inputs is not None:
        raise UsageError(
            "--golden: the bundle holds the inputs and MODEL is the ONNX file checked; drop "
            f"{'--onnx' if onnx is not None else '--inputs'}."
        )
    if detect_format(model) != "onnx":
        raise UsageError(
            f"{model}: is a {detect_format(model)} model; --golden checks an .onnx file against a "
            "bundle made by `xverify snapshot`."
        )
    return check_golden(
        model,
        golden,
        atol=atol,
        rtol=rtol,
        runtimes=runtimes,
        layers=layers,
        oracle=oracle,
        max_memory=max_memory,
    )


def _refuse_overwrite(outputs, inputs, directories=()) -> None:
    """Before any work: no output over an input file, and no output directory already holding files."""
    from xverify.errors import UsageError

    sources = {os.path.realpath(p) for p in inputs if p}
    for target in outputs:
        if target and os.path.realpath(target) in sources:
            raise UsageError(f"{target}: refusing to overwrite an input file; choose another path.")
    if any(directories):
        from xverify.repro import refuse_nonempty

        for directory in filter(None, directories):
            refuse_nonempty(directory)


def _write_reports(report, json_path, junit_path, html_path) -> None:
    if json_path:
        from xverify.report.json import write_json

        write_json(report, json_path)
    if junit_path:
        from xverify.report.junit import write_junit

        write_junit(report, junit_path)
    if html_path:
        from xverify.report.html import write_html

        write_html(report, html_path)


def _write_markdown(report, path) -> None:
    """--markdown FILE, and GitHub Actions' job summary (appended) when $GITHUB_STEP_SUMMARY is set."""
    from xverify.report.markdown import step_summary_path, write_markdown

    summary = step_summary_path()
    if path and not (summary and os.path.realpath(path) == os.path.realpath(summary)):
        write_markdown(report, path)
    if summary:
        write_markdown(report, summary, append=True)


def _write_repro(report, directory, model, onnx, *args) -> None:
    from xverify.repro import reproduce

    inputs, samples, seed, opset, cache, unsafe, max_memory = args
    script = reproduce(
        report,
        model,
        directory,
        onnx=onnx,
        inputs=inputs,
        samples=samples,
        seed=seed,
        opset=opset,
        cache=cache,
        unsafe=unsafe,
        max_memory=max_memory,
    )
    out.print(f"wrote a repro of layer {report.first_divergence.layer!r} in {directory}: python {script}")


@app.command("repro")
def repro_command(
    model: ModelArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="A new (or empty) directory for the repro.")],
    onnx: Annotated[Path | None, typer.Option(help="Cut this ONNX file instead of converting MODEL.")] = None,
    inputs: InputsOpt = None,
    samples: SamplesOpt = 16,
    seed: SeedOpt = 0,
    atol: AtolOpt = None,
    rtol: RtolOpt = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset for the conversion.")] = None,
    unsafe: Annotated[
        bool, typer.Option("--unsafe", help="Let Keras run code stored in the model file.")
    ] = False,
    max_memory: MaxMemory = None,
    debug: Debug = False,
) -> None:
    """Check MODEL, cut the ONNX graph down to the first divergent layer and write a standalone
    repro (model.onnx, test_data_set_0/, repro.py: ONNX Runtime and NumPy only) into a new directory.

    Exit 1 when the repro is written (the mismatch reproduces on the cut graph); 2 when there is
    nothing that reproduces, and then nothing is written."""

    def body():
        import xverify

        _refuse_overwrite([output], [model, onnx, inputs], directories=[output])
        report = xverify.check(
            model,
            onnx=onnx,
            inputs=inputs,
            samples=samples,
            seed=seed,
            atol=atol,
            rtol=rtol,
            opset=opset,
            unsafe=unsafe,
            max_memory=max_memory,
            ort_optimized=False,
        )
        _write_repro(report, output, model, onnx, inputs, samples, seed, opset, True, unsafe, max_memory)
        raise typer.Exit(1)

    _run(debug, body)


@app.command("suggest-tolerance")
def suggest_tolerance_command(
    model: ModelArg,
    onnx: Annotated[
        Path | None, typer.Option(help="Check this ONNX file instead of converting MODEL.")
    ] = None,
    inputs: InputsOpt = None,
    samples: SamplesOpt = 16,
    seed: SeedOpt = 0,
    runtimes: Annotated[str, typer.Option(help=_runtimes_help())] = "numpy,onnxruntime,tensorflow",
    factor: Annotated[float, typer.Option(help="Safety factor over the largest observed difference.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the suggestion as JSON.")] = False,
    unsafe: Annotated[
        bool, typer.Option("--unsafe", help="Let Keras run code stored in the model file (Lambda layers).")
    ] = False,
    max_memory: MaxMemory = None,
    debug: Debug = False,
) -> None:
    """Suggest per-output atol/rtol from each runtime's distance to the float64 oracle and to the others."""

    def body():
        import json

        from xverify.suggest import suggest_tolerance

        made = suggest_tolerance(
            model,
            onnx,
            factor=factor,
            inputs=inputs,
            samples=samples,
            seed=seed,
            runtimes=runtimes,
            unsafe=unsafe,
            max_memory=max_memory,
        )
        if as_json:
            print(json.dumps(made.to_dict(), indent=2))
            return
        report = made.report
        out.print(f"Over {report.inputs.samples} samples ({report.inputs.source}):")
        for o in made.outputs:
            out.print(f"  {o.output}: atol {o.atol:g}, rtol {o.rtol:g}", highlight=False)
            out.print(f"    {o.reason}", highlight=False, markup=False)
        if not report.passed:
            out.print(
                "[yellow]the check fails at the default tolerance: a suggestion this loose may hide a "
                "conversion fault; read `xverify check` first[/]"
            )
        out.print("\npyproject.toml:\n" + made.toml(), highlight=False, markup=False)
        out.print("flags: " + " ".join(made.flags()), highlight=False, markup=False)

    _run(debug, body)


@app.command()
def convert(
    model: ModelArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the ONNX model.")],
    opset: Annotated[int | None, typer.Option(help="ONNX opset, 13 to 18 (default 17).")] = None,
    unsafe: Annotated[
        bool, typer.Option("--unsafe", help="Let Keras run code stored in the model file.")
    ] = False,
    max_memory: MaxMemory = None,
    debug: Debug = False,
) -> None:
    """Convert a Keras model to ONNX (tf2onnx, inputs/outputs named after the Keras model's)."""

    def body():
        from xverify.budget import Budget
        from xverify.convert import check_opset, save_onnx
        from xverify.convert import convert as convert_keras
        from xverify.load import load_keras

        _refuse_overwrite([output], [model])
        opset_used = check_opset(opset)
        budget = Budget.parse(max_memory)
        onnx_model = convert_keras(load_keras(model, unsafe=unsafe, budget=budget), opset_used)
        save_onnx(onnx_model, output, inputs=[model])
        ops = sorted({n.op_type for n in onnx_model.graph.node})
        out.print(
            f"wrote {output} (opset {opset_used}, {len(onnx_model.graph.node)} nodes: {', '.join(ops)})"
        )

    _run(debug, body)


@app.command()
def snapshot(
    model: ModelArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="The bundle's directory (new or empty).")],
    onnx: Annotated[
        Path | None, typer.Option(help="Record this ONNX file instead of converting MODEL.")
    ] = None,
    inputs: InputsOpt = None,
    samples: SamplesOpt = 16,
    seed: SeedOpt = 0,
    atol: AtolOpt = None,
    rtol: RtolOpt = None,
    opset: Annotated[
        int | None, typer.Option(help="ONNX opset for the conversion (13-18, default 17).")
    ] = None,
    max_size: Annotated[
        str,
        typer.Option(
            "--max-size",
            help="Bytes of arrays the bundle may hold; layers that do not fit are left out (listed).",
        ),
    ] = "64MiB",
    force: Annotated[
        bool, typer.Option("--force", help="Write over the files of a non-empty output directory.")
    ] = False,
    unsafe: Annotated[
        bool, typer.Option("--unsafe", help="Let Keras run code stored in the model file.")
    ] = False,
    max_memory: MaxMemory = None,
    debug: Debug = False,
) -> None:
    """Check MODEL, then record a golden bundle: inputs, every runtime's outputs, the layers'
    outputs, tolerances and provenance, for `xverify check MODEL.onnx --golden BUNDLE/`."""

    def body():
        from xverify.golden import snapshot as make_snapshot

        _refuse_overwrite([output], [model, onnx, inputs])
        made = make_snapshot(
            model,
            output,
            onnx=onnx,
            inputs=inputs,
            samples=samples,
            seed=seed,
            atol=atol,
            rtol=rtol,
            opset=opset,
            max_size=_size(max_size, "--max-size"),
            force=force,
            unsafe=unsafe,
            max_memory=max_memory,
        )
        layers = made.manifest["layers"]
        out.print(
            f"wrote {output}: {len(made.manifest['outputs'])} runtimes' outputs, "
            f"{len(layers['rows'])} layers (check passed at atol {made.report.tolerance['atol']}, "
            f"rtol {made.report.tolerance['rtol']})"
        )
        if layers["note"]:
            out.print(f"note: {layers['note']}")

    _run(debug, body)


def _size(text: str, option: str) -> int:
    """A size option (``64MiB``, ``5e6``) in bytes; a bad one names the option."""
    from xverify.budget import Budget
    from xverify.errors import UsageError

    try:
        return Budget.parse(text).nbytes
    except UsageError:
        raise UsageError(f"{option} {text!r}: expected a size such as 64MiB, 500kB or 5e6 (bytes).") from None


@app.command()
def weights(
    model: ModelArg,
    npz: Annotated[Path | None, typer.Option(help="Save every weight (Keras layout) to this .npz.")] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print more values of each weight.")
    ] = False,
    unsafe: Annotated[
        bool, typer.Option("--unsafe", help="Let Keras run code stored in the model file.")
    ] = False,
    debug: Debug = False,
) -> None:
    """Show each layer's weights and biases as read back from the ONNX initializers."""

    def body():
        from xverify.report.weights import load_weights, print_weights, save_npz

        _refuse_overwrite([npz], [model])
        layers = load_weights(model, unsafe=unsafe)
        print_weights(layers, out, verbose=verbose)
        if npz:
            save_npz(layers, npz)
            out.print(f"wrote {npz}")
        raise typer.Exit(0 if all(w.passed for layer in layers for w in layer.weights) else 1)

    _run(debug, body)


@app.command()
def explain(
    model: ModelArg,
    input: Annotated[
        str,
        typer.Option("--input", help="The input values of one sample, comma-separated (e.g. 10 or 0.5,1,2)."),
    ],
    csv: Annotated[Path | None, typer.Option("--csv", help="Write the step-by-step table as CSV.")] = None,
    xlsx: Annotated[
        Path | None,
        typer.Option(
            "--xlsx",
            help="Write a workbook of live formulas (x, weights, z, activations): change a cell and it recomputes.",
        ),
    ] = None,
    mine: Annotated[
        str | None,
        typer.Option("--mine", help="The result you computed by hand: find which common mistake gives it."),
    ] = None,
    unit: Annotated[
        str | None,
        typer.Option(
            "--unit",
            help="Spell out this output element (a flat index, or comma-separated per axis, e.g. 3,4,2) of every Conv, pooling, normalization, Embedding and recurrent layer.",
        ),
    ] = None,
    unsafe: Annotated[
        bool, typer.Option("--unsafe", help="Let Keras run code stored in the model file.")
    ] = False,
    debug: Debug = False,
) -> None:
    """Show the arithmetic of one input step by step: x*w + b = z, activation(z) = a, per unit."""

    def body():
        from xverify.errors import InputDataError
        from xverify.explain import explain as run_explain
        from xverify.load import load_keras

        _refuse_overwrite([csv, xlsx], [model])
        try:
            values = [float(v) for v in input.replace(";", ",").split(",") if v.strip()]
        except ValueError as exc:
            raise InputDataError(f"--input {input!r}: expected comma-separated numbers.") from exc
        keras_model = load_keras(model, unsafe=unsafe)
        try:
            explanation = run_explain(keras_model, values, _unit_index(unit))
        except InputDataError as exc:
            raise InputDataError(f"{model}: {exc}") from exc
        out.print(explanation.text(), highlight=False, markup=False, soft_wrap=True)
        if mine is not None:
            out.print("\n" + explanation.diagnose(mine).text(), highlight=False, markup=False, soft_wrap=True)
        if csv:
            explanation.to_csv(csv)
            out.print(f"wrote {csv}")
        if xlsx:
            explanation.to_xlsx(xlsx)
            out.print(f"wrote {xlsx}")

    _run(debug, body)


def _unit_index(text):
    """--unit as a list of ints, or an InputDataError naming what was expected."""
    if text is None:
        return None
    from xverify.errors import InputDataError

    try:
        return [int(v) for v in text.replace(",", " ").split()] or None
    except ValueError as exc:
        raise InputDataError(
            f"--unit {text!r}: expected a whole number (a flat index) or one per "
            "axis separated by commas, e.g. --unit 3,4,2."
        ) from exc


@app.command()
def ops(debug: Debug = False) -> None:
    """List the ONNX ops the NumPy engine runs, the opsets of each kernel and the attributes it honours."""

    def body():
        from rich.table import Table

        from xverify.engine import supported_ops

        table = Table(title="ONNX ops supported by xverify's NumPy engine", title_justify="left")
        for column in ("op", "opsets", "attributes", "notes"):
            table.add_column(column)
        specs = supported_ops()
        for spec in specs:
            name = f"{spec.domain}.{spec.name}" if spec.domain else spec.name
            table.add_row(name, spec.versions, ", ".join(spec.attributes) or "-", spec.notes)
        out.print(table)
        out.print(
            f"{len({(s.domain, s.name) for s in specs})} ops, {len(specs)} kernels; "
            "opsets: the model's opset of the op's domain each kernel runs at"
        )

    _run(debug, body, tensorflow=False)


@app.command("runtimes")
def list_runtimes(debug: Debug = False) -> None:
    """List the runtimes check can compare: what each taps, and whether it is installed."""

    def body():
        from rich.table import Table

        from xverify.runtimes import DEFAULT_RUNTIMES, RUNTIMES

        table = Table(
            title="Runtimes (--runtimes; default: " + ",".join(DEFAULT_RUNTIMES) + ")", title_justify="left"
        )
        for column in ("name", "runtime", "runs", "layer taps", "installed"):
            table.add_column(column)
        for name, spec in RUNTIMES.items():
            runs = "the ONNX model" if spec.runs_onnx else "the Keras model"
            taps = ("ONNX tensors" if spec.runs_onnx else "Keras layers") + (
                ", streamed" if spec.streams else ""
            )
            table.add_row(name, spec.label, runs, taps, "yes" if spec.installed() else f"no: {spec.install}")
        out.print(table)

    _run(debug, body, tensorflow=False)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
