"""The command line: declarations, one Options and one Gates per run, the library call, the output, exit codes."""

from __future__ import annotations

import functools
import os
import signal
import sys
import traceback
from typing import Annotated, List, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from repalign import __version__
from repalign.console import Progress, Terminated, emit, err, on_sigterm, reserve_std_fds
from repalign.errors import RepalignError
from repalign.io.selector import FORMATS
from repalign.metrics import DEFAULT_METRICS, REGISTRY
from repalign.safe_write import check_outputs
from repalign.text import shown

EXIT_OK, EXIT_CHECK_FAILED, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_TERMINATED = 128 + signal.SIGTERM


class _Group(TyperGroup):
    """Click's own usage errors quote what was typed; escape it like every other message (no ESC, no newline)."""

    def make_context(self, *args, **kwargs):
        return _escaping_usage_errors(super().make_context, *args, **kwargs)

    def invoke(self, ctx):
        return _escaping_usage_errors(super().invoke, ctx)


def _is_click_error(exc: BaseException) -> bool:
    """Click's own exceptions (usage errors, aborts): from click, or from the copy of click that typer ships
    since 0.2x (``typer._click``), which is not the ``click`` package and need not be installed."""
    module = type(exc).__module__
    return module == "click" or module.startswith(("click.", "typer._click"))


def _escaping_usage_errors(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if _is_click_error(exc) and isinstance(getattr(exc, "message", None), str):
            exc.message = shown(exc.message)
        raise


_STDIN_MARK = "\x00stdin:"


class _Command(TyperCommand):
    """'-@FORMAT' and '-:KEY' name standard input: Click would take them for options, so they are kept from
    its option parser and given back as typed."""

    def parse_args(self, ctx, args):
        marked = [_STDIN_MARK + a if a.startswith(("-@", "-:")) else a for a in args]
        rest = super().parse_args(ctx, marked)
        ctx.params = {k: _unmarked(v) for k, v in ctx.params.items()}
        return rest


def _unmarked(value):
    if isinstance(value, str):
        return value.removeprefix(_STDIN_MARK)
    if isinstance(value, (list, tuple)):
        return type(value)(_unmarked(v) for v in value)
    return value


app = typer.Typer(
    cls=_Group,
    help="Do two embedding spaces organise the same items the same way? Mutual k-NN and CKA, fast and honest.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _fail(message: str) -> None:
    err(f"Error: {message}")
    raise typer.Exit(EXIT_INPUT)


def handled(fn):
    """Turn library errors into one line on stderr and exit 2; bugs keep their traceback and exit 3."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except RepalignError as exc:
            _fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if _is_click_error(exc):
                raise
            if sys.stderr is not None:
                traceback.print_exc(file=sys.stderr)
            err(f"repalign: internal error ({type(exc).__name__}); this is a bug, please report it "
                "with the command that caused it")
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


def _version(value: bool):
    if value:
        typer.echo(f"repalign {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    """repalign: mutual k-NN and CKA between two embeddings of the same items."""


# ---------------------------------------------------------------- options shared by compare and matrix
# Declared once: both commands take them with the same name, default and help.

Metric = Annotated[Optional[List[str]], typer.Option(
    "--metric", "-m", metavar="NAMES",
    help=f"{', '.join(REGISTRY)}; NAME:PARAM=VALUE,PARAM=VALUE sets parameters; repeatable or comma-separated; "
         f"'help' lists them all (repalign metrics) [default: {','.join(DEFAULT_METRICS)}].")]
K = Annotated[Optional[int], typer.Option("--k", "-k", metavar="K", help="Neighbours per item for mknn [default: 10].")]
Distance = Annotated[str, typer.Option(
    "--distance", "-d", metavar="DIST", help="Neighbour similarity: cosine, ip or l2.")]
Clip = Annotated[Optional[float], typer.Option(
    "--clip", metavar="Q", help="Clamp |values| at this quantile of all entries first (the paper uses 0.95).")]
Normalize = Annotated[Optional[bool], typer.Option(
    "--normalize/--no-normalize", help="L2-normalise rows before every metric, CKA included.")]
Preset = Annotated[Optional[str], typer.Option(
    "--preset", metavar="NAME",
    help="prh = the paper's pipeline: --clip 0.95 --normalize --k 10 (explicit options win).")]
Format = Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="table, json, csv or markdown.")]
Resamples = Annotated[int, typer.Option(
    "--resamples", "-B", metavar="B", help="Bootstrap replicates for confidence intervals; 0 switches them off.")]
Confidence = Annotated[float, typer.Option("--confidence", metavar="LEVEL", help="Two-sided confidence level.")]
Seed = Annotated[Optional[int], typer.Option(
    "--seed", metavar="S", help="Seed for resamples and permutations (drawn and reported if omitted).")]
CiMethod = Annotated[str, typer.Option(
    "--ci-method", metavar="METHOD",
    help="auto, bootstrap, percentile, basic, bca, normal (mknn and CKA), ij (mknn), jackknife or corrected "
         "(CKA); auto = each metric's validated default (mknn: ij; CKA: corrected jackknife); bootstrap = its "
         "validated bootstrap flavour (mknn: normal).")]
Permutations = Annotated[Optional[int], typer.Option(
    "--permutations", "-P", metavar="P",
    help="Permutations for p-values and calibrated scores [default: 1000 for k-NN metrics, 200 for a "
         "best-over-layers p-value; given explicitly, CKA too].")]
FailUnder = Annotated[Optional[List[str]], typer.Option(
    "--fail-under", metavar="METRIC=X", help="Exit 1 if the metric (of any pair) is below X (repeatable).")]
FailAbove = Annotated[Optional[List[str]], typer.Option(
    "--fail-above", metavar="METRIC=X", help="Exit 1 if the metric (of any pair) is above X (repeatable).")]
On = Annotated[str, typer.Option(
    "--on", metavar="WHAT", help="Apply --fail-under/--fail-above to: value, ci-low or ci-high.")]
Output = Annotated[Optional[str], typer.Option(
    "--output", "-o", metavar="FILE",
    help="Also write the report to FILE, in the format its suffix names: .json, .csv, .md or .txt.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No warnings or notes on stderr; only the output.")]
AllowExternal = Annotated[bool, typer.Option(
    "--allow-external", help="Follow HDF5 external links and virtual datasets that read other files.")]
Ids = Annotated[Optional[str], typer.Option(
    "--ids", metavar="KEY",
    help="Pair items by this id column/dataset/member in every file (auto: the one named id, ids, key or name).")]
RequireAll = Annotated[bool, typer.Option(
    "--require-all", help="With ids: any item without a partner in every input is an error.")]
MaxRows = Annotated[Optional[int], typer.Option(
    "--max-rows", metavar="N", help="Evaluate on N randomly chosen paired items (the same in every input; --seed).")]
Cache = Annotated[Optional[str], typer.Option(
    "--cache", metavar="DIR",
    help="Keep each layer's neighbour lists in DIR (created if missing) and reuse them in later runs; same "
         "results [default: $REPALIGN_CACHE, else none].")]
Plot = Annotated[Optional[str], typer.Option(
    "--plot", metavar="FILE", help="Save the heatmaps as .png, .svg or .pdf (needs matplotlib).")]
SearchMethod = Annotated[str, typer.Option(
    "--search", metavar="METHOD",
    help="Neighbour search: exact (certified), approx (FAISS IVF; recall and mknn shift measured and reported) "
         "or auto (exact unless predicted to take over 60 s).")]
Recall = Annotated[float, typer.Option(
    "--recall", metavar="R", help="Target recall of --search approx, in (0, 1]: nprobe is raised until a "
                                  "seeded sample reaches it.")]
Workers = Annotated[Optional[int], typer.Option(
    "--workers", metavar="N",
    help="Run each input layer's work and each pair as tasks on a Dask cluster of N local worker processes "
         "(pip install 'repalign[dask]'); same results.")]
Scheduler = Annotated[Optional[str], typer.Option(
    "--scheduler", metavar="ADDRESS",
    help="Run the tasks on an existing Dask cluster (e.g. tcp://10.0.0.5:8786); its workers open the input paths, "
         "so they must be on storage every worker sees.")]
PlotScale = Annotated[str, typer.Option(
    "--plot-scale", metavar="SCALE",
    help="Heatmap colours: data (from the values' min to max) or fixed (the metric's full range, 0–1 or −1–1).")]


def _options(**kwargs):
    """The one Options object of a run, validated once (library errors become exit 2); ``-m help`` lists the
    metrics and exits 0."""
    from repalign.options import Options

    if any(str(v).strip().lower() == "help" for v in kwargs.get("metrics") or ()):
        from repalign.metrics.catalogue import text

        emit(text(REGISTRY))
        raise typer.Exit(EXIT_OK)

    return Options.build(**kwargs)


def _run(compute, quiet: bool):
    """Run the library call with the spinner on stderr (on a terminal only)."""
    progress = Progress(quiet)
    try:
        return compute(progress)
    finally:
        progress.close()


@app.command(cls=_Command)
@handled
def compare(
    a: Annotated[str, typer.Argument(
        help="First embeddings: PATH or PATH:KEY (.npy, .npz, .h5, .parquet, .pt); PATH@FORMAT names the format; "
             "- reads standard input.")],
    b: Annotated[str, typer.Argument(help="Second embeddings, same items in the same row order.")],
    metric: Metric = None, k: K = None, distance: Distance = "cosine", clip: Clip = None, normalize: Normalize = None,
    preset: Preset = None, fmt: Format = "table", resamples: Resamples = 1000, confidence: Confidence = 0.95,
    seed: Seed = None, ci_method: CiMethod = "auto", permutations: Permutations = None,
    explain: Annotated[bool, typer.Option("--explain", help="Add one plain-language line per metric.")] = False,
    fail_under: FailUnder = None, fail_above: FailAbove = None, on: On = "value",
    baseline: Annotated[Optional[str], typer.Option(
        "--baseline", metavar="FILE", help="An earlier repalign JSON report to compare with.")] = None,
    max_drop: Annotated[Optional[List[str]], typer.Option(
        "--max-drop", metavar="METRIC=X", help="Exit 1 if the metric fell by more than X since --baseline.")] = None,
    output: Output = None, quiet: Quiet = False, allow_external: AllowExternal = False, ids: Ids = None,
    ids_a: Annotated[Optional[str], typer.Option(
        "--ids-a", metavar="KEY", help="Id key in A (overrides --ids).")] = None,
    ids_b: Annotated[Optional[str], typer.Option(
        "--ids-b", metavar="KEY", help="Id key in B (overrides --ids).")] = None,
    require_all: RequireAll = False, max_rows: MaxRows = None,
    layer_a: Annotated[Optional[str], typer.Option(
        "--layer-a", metavar="LAYERS",
        help="Layers of A (n×L×d array or KEY glob): all, 3, -1, 0:12:2 or 1,5,9 [default: all].")] = None,
    layer_b: Annotated[Optional[str], typer.Option(
        "--layer-b", metavar="LAYERS", help="Layers of B, as --layer-a.")] = None,
    plot: Plot = None,
    plot_scale: PlotScale = "data",
    cache: Cache = None,
    format_a: Annotated[Optional[str], typer.Option(
        "--format-a", metavar="FORMAT",
        help="Read A as this format whatever its suffix (npy, npz, hdf5, parquet, torch); as A@FORMAT.")] = None,
    format_b: Annotated[Optional[str], typer.Option(
        "--format-b", metavar="FORMAT", help="Read B as this format, as --format-a.")] = None,
    label_a: Annotated[Optional[str], typer.Option(
        "--label-a", metavar="NAME", help="Show A as NAME instead of its path (kept in JSON as 'name').")] = None,
    label_b: Annotated[Optional[str], typer.Option(
        "--label-b", metavar="NAME", help="Show B as NAME instead of its path.")] = None,
    search: SearchMethod = "auto", recall: Recall = 0.95, workers: Workers = None, scheduler: Scheduler = None,
):
    """Score how alike two embeddings of the same items are.

    When either input has several layers (an n×L×d array, or KEY with a glob such as 'layers/*'), every
    pair of layers is scored: the table shows the matrix and each metric's best pair.
    """
    from repalign import checks
    from repalign.api import compare as run

    _check_format(fmt)
    _check_plot_scale(plot_scale)
    check_outputs([a, b], baseline, output=output, plot=plot)
    options = _options(metrics=metric, k=k, distance=distance, clip=clip, normalize=normalize, preset=preset,
                       resamples=resamples, confidence=confidence, seed=seed, ci_method=ci_method,
                       permutations=permutations, require_all=require_all, max_rows=max_rows,
                       ids=(ids if ids_a is None else ids_a, ids if ids_b is None else ids_b),
                       layers=(layer_a, layer_b), allow_external=allow_external, formats=(format_a, format_b),
                       cache=cache, search=search, recall=recall, workers=workers, scheduler=scheduler)
    gates = checks.Gates.build(options.metric_ids, fail_under=fail_under, fail_above=fail_above, on=on,
                               baseline=baseline, max_drop=max_drop, resamples=resamples)
    labels = (label_a, label_b) if label_a is not None or label_b is not None else None
    result = _run(lambda progress: run(a, b, options=options, progress=progress, labels=labels), quiet)
    result = gates.apply(result)
    if plot is not None and result.sweep is None:
        raise RepalignError("--plot draws a layer sweep; both inputs have a single layer here (give an n×L×d "
                            "array or a KEY glob, or use repalign matrix)")
    _finish(result, fmt=fmt, output=output, plot=plot, plot_scale=plot_scale, quiet=quiet, explain=explain)


def _check_format(fmt: str) -> None:
    from repalign import report

    if fmt not in report.FORMATS:
        raise RepalignError(f"unknown --format '{fmt}' (choose from {', '.join(report.FORMATS)})")


def _check_plot_scale(scale: str) -> None:
    if scale not in ("data", "fixed"):
        raise RepalignError(f"unknown --plot-scale '{scale}' (choose from data, fixed)")


def _finish(result, *, fmt: str, output: str | None, plot: str | None, quiet: bool, explain: bool = False,
            plot_scale: str = "data") -> None:
    """Warnings, report file, plot, the output itself, failed checks, and exit 1 if any check failed."""
    from repalign import report

    if not quiet:
        for note in result.notes:
            err(f"warning: {note}")
    if output is not None:
        report.write(result, output)
    if plot is not None:
        report.PLOT.save(result, plot, scale=plot_scale)
    emit(report.table(result, explain=explain) if fmt == "table" else report.FORMATTERS[fmt].format(result),
          is_json=fmt == "json")
    if explain and fmt != "table" and not quiet:
        # Keep stdout machine-readable; the explanation is for the person at the terminal.
        for line in report.explain_lines(result):
            err(line)
    for c in result.checks:
        if not c.passed:
            err(f"FAIL: {c.message} (--{c.kind})")
    if result.failed:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command(cls=_Command)
@handled
def matrix(
    inputs: Annotated[List[str], typer.Argument(
        metavar="INPUT...",
        help="Two or more embeddings: PATH or PATH:KEY; PATH@FORMAT names the format; - reads standard input; "
             "NAME=INPUT shows the input as NAME (NAME without '/', ':' or '.').")],
    reference: Annotated[Optional[str], typer.Option(
        "--reference", "-r", metavar="INPUT",
        help="Compare every INPUT with this one only (results sorted best first) instead of every pair.")] = None,
    metric: Metric = None, k: K = None, distance: Distance = "cosine", clip: Clip = None, normalize: Normalize = None,
    preset: Preset = None, fmt: Format = "table", resamples: Resamples = 1000, confidence: Confidence = 0.95,
    seed: Seed = None, ci_method: CiMethod = "auto", permutations: Permutations = None,
    fail_under: FailUnder = None, fail_above: FailAbove = None, on: On = "value", output: Output = None,
    quiet: Quiet = False, allow_external: AllowExternal = False, ids: Ids = None, require_all: RequireAll = False,
    max_rows: MaxRows = None,
    layers: Annotated[Optional[str], typer.Option(
        "--layers", metavar="LAYERS",
        help="Layers of every layered input: all, 3, -1, 0:12:2 or 1,5,9 [default: all; best pair per cell].")] = None,
    plot: Plot = None,
    plot_scale: PlotScale = "data",
    cache: Cache = None,
    search: SearchMethod = "auto", recall: Recall = 0.95, workers: Workers = None, scheduler: Scheduler = None,
):
    """Alignment of every pair of several embeddings of the same items (or each against --reference)."""
    from repalign import checks
    from repalign.api import matrix as run

    _check_format(fmt)
    _check_plot_scale(plot_scale)
    named = [_named_input(x) for x in ([reference] if reference else []) + inputs]
    names = [name for name, _ in named]
    xs = [x for _, x in named]
    if reference:
        reference, inputs = xs[0], xs[1:]
    else:
        inputs = xs
    check_outputs(xs, output=output, plot=plot)
    options = _options(metrics=metric, k=k, distance=distance, clip=clip, normalize=normalize, preset=preset,
                       resamples=resamples, confidence=confidence, seed=seed, ci_method=ci_method,
                       permutations=permutations, ids=(ids,) * len(xs), require_all=require_all,
                       max_rows=max_rows, layers=(layers,) * len(xs), allow_external=allow_external,
                       cache=cache, id_options="--ids", search=search, recall=recall, workers=workers,
                       scheduler=scheduler)
    gates = checks.Gates.build(options.metric_ids, fail_under=fail_under, fail_above=fail_above, on=on,
                               resamples=resamples)
    labels = names if any(name is not None for name in names) else None
    result = _run(lambda progress: run(inputs, reference=reference, options=options, progress=progress,
                                       labels=labels), quiet)
    _finish(gates.apply(result), fmt=fmt, output=output, plot=plot, plot_scale=plot_scale, quiet=quiet)


_INSPECT_HELP = ("A file of any supported format (" + ", ".join(sorted(FORMATS)) + "; a directory of shards); "
                 "PATH@FORMAT names the format, - is stdin.")


def _named_input(arg: str) -> tuple[str | None, str]:
    """``NAME=INPUT`` → (NAME, INPUT); anything else → (None, arg). A name has no '/', ':' or '.', and an
    argument that is an existing path is a path, so 'a=b.npy' that exists on disk is read as that file."""
    name, sep, rest = arg.partition("=")
    if not sep or not name or not rest or any(c in name for c in "/:.") or os.path.exists(arg):
        return None, arg
    return name, rest


@app.command(cls=_Command)
@handled
def inspect(
    path: str = typer.Argument(..., metavar="FILE", help=_INSPECT_HELP),
    fmt: str = typer.Option("table", "--format", "-f", metavar="FORMAT", help="table or json."),
):
    """List every array in a file with its shape and dtype; usable ones are marked."""
    import json

    from repalign.io import inspect as run
    from repalign.text import clean_tree

    if fmt not in ("table", "json"):
        raise RepalignError(f"unknown --format '{fmt}' for inspect (choose from table, json)")
    infos = run(path)
    if fmt == "json":
        rows = [{"key": i.name, "shape": list(i.shape), "dtype": i.dtype, "embedding": i.embedding_like,
                 "layers": i.shape[1] if i.layered else None} for i in infos]
        emit(json.dumps(clean_tree({"path": path, "arrays": rows}), indent=2, ensure_ascii=False) + "\n", is_json=True)
        return
    from repalign.report.table import inspect_table

    emit(inspect_table(path, infos))


@app.command()
@handled
def schema():
    """Print the JSON Schema (draft 2020-12) that every --format json report follows."""
    import json

    from repalign.report.json import report_schema

    emit(json.dumps(report_schema(), indent=2, ensure_ascii=False) + "\n", is_json=True)


@app.command("metrics")
@handled
def metrics_command(
    fmt: str = typer.Option("table", "--format", "-f", metavar="FORMAT", help="table, json or markdown."),
):
    """List every metric: direction, range, parameters, chance level, permutation null and interval."""
    import json

    from repalign.errors import UsageError
    from repalign.metrics.catalogue import entry, markdown, text

    if fmt == "json":
        emit(json.dumps([entry(s) for s in REGISTRY.values()], indent=2, ensure_ascii=False) + "\n", is_json=True)
    elif fmt == "markdown":
        emit(markdown(REGISTRY))
    elif fmt == "table":
        emit(text(REGISTRY))
    else:
        raise UsageError(f"unknown --format '{fmt}' for repalign metrics (choose from table, json, markdown)")


def main() -> None:
    """Console-script entry point. SIGTERM exits 143 (128 + 15, as the shell reports a kill) after cleanup."""
    reserve_std_fds()
    signal.signal(signal.SIGTERM, on_sigterm)
    if hasattr(signal, "SIGXFSZ"):
        # Past a file size limit (ulimit -f) the write then fails with EFBIG and is reported, instead of
        # the process being killed half-way through a file.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        app()
    except Terminated:
        sys.exit(EXIT_TERMINATED)
