"""The command line: parse, call the library, render, map errors to exit codes."""

from __future__ import annotations

import functools
import os
import signal
import sys
import traceback
from typing import List, Optional

import typer
from typer.core import TyperGroup

from repalign import __version__
from repalign.errors import RepalignError, UsageError
from repalign.safe_write import check_outputs
from repalign.text import for_stream, no_color, shown

EXIT_OK, EXIT_CHECK_FAILED, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_TERMINATED = 128 + signal.SIGTERM

class _Group(TyperGroup):
    """Click's own usage errors quote what was typed; escape it like every other message (no ESC, no newline)."""

    def make_context(self, *args, **kwargs):
        return _escaping_usage_errors(super().make_context, *args, **kwargs)

    def invoke(self, ctx):
        return _escaping_usage_errors(super().invoke, ctx)


def _escaping_usage_errors(fn, *args, **kwargs):
    import click

    try:
        return fn(*args, **kwargs)
    except click.ClickException as exc:
        exc.message = shown(exc.message)
        raise


app = typer.Typer(
    cls=_Group,
    help="Do two embedding spaces organise the same items the same way? Mutual k-NN and CKA, fast and honest.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _err(line: str) -> None:
    """One line on stderr, escaped and in an encoding it takes; silence when stderr itself is gone."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(for_stream(shown(line), stream) + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def _fail(message: str) -> None:
    _err(f"Error: {message}")
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
            if type(exc).__module__.startswith("click"):
                raise
            if sys.stderr is not None:
                traceback.print_exc(file=sys.stderr)
            _err(f"repalign: internal error ({type(exc).__name__}); this is a bug, please report it "
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


class _Progress:
    """A spinner on stderr for work that takes longer than a second, only on a terminal, never with NO_COLOR."""

    def __init__(self, quiet: bool):
        import threading

        enabled = not quiet and not no_color() and sys.stderr is not None and sys.stderr.isatty()

        self.stage = "working"
        self.status = None
        self.timer = threading.Timer(1.0, self._show) if enabled else None
        if self.timer:
            self.timer.daemon = True
            self.timer.start()

    def _show(self):
        from rich.console import Console

        from repalign.text import ascii_only

        # The default spinner is drawn in braille; a terminal that takes only ASCII gets - \\ | /.
        spinner = "line" if ascii_only(sys.stderr) else "dots"
        self.status = Console(stderr=True).status(self.stage, spinner=spinner)
        self.status.start()

    def __call__(self, stage: str):
        self.stage = stage
        if self.status is not None:
            self.status.update(stage)

    def close(self):
        if self.timer:
            self.timer.cancel()
        if self.status is not None:
            self.status.stop()


def _render(renderable) -> str:
    """A rich renderable as the text stdout gets: colour only on a terminal, none at all with NO_COLOR."""
    import io

    from rich.console import Console

    # rich decides colour and width for stdout; the text is then written by _emit, which handles a stdout
    # that fails. Names are data: no markup, emoji codes or highlighting are read into them. Off a terminal
    # rich would assume 80 columns and wrap the table; a log or a pipe has room for the whole row.
    from repalign.text import ascii_only, ascii_renderable

    if ascii_only(sys.stdout):
        renderable = ascii_renderable(renderable)
    probe = Console(file=sys.stdout)
    terminal = probe.is_terminal
    colours = None if no_color() else probe.color_system  # rich's own NO_COLOR handling keeps bold and dim
    console = Console(file=io.StringIO(), force_terminal=terminal, color_system=colours,
                      width=probe.width if terminal else 120, markup=False, emoji=False, highlight=False)
    console.print(renderable)
    return console.file.getvalue()


def _emit(text_or_renderable, is_json: bool = False) -> None:
    """Write the result to stdout; a closed, full or broken stdout is an error (exit 2), not a traceback."""
    out = sys.stdout
    if out is None:
        raise UsageError("cannot write to standard output (it is closed)")
    text = text_or_renderable if isinstance(text_or_renderable, str) else _render(text_or_renderable)
    if is_json:
        from repalign.text import ascii_only, json_ascii

        # For an ASCII stream, JSON's own escapes keep the document valid and the data exact.
        text = json_ascii(text) if ascii_only(out) else text
    try:
        _write_all(out, for_stream(text, out))
    except (OSError, ValueError) as exc:
        _discard_stdout()
        raise UsageError(f"cannot write to standard output ({getattr(exc, 'strerror', None) or exc})") from None


def _write_all(out, text: str) -> None:
    """Write and flush every byte. An unbuffered stdout (python -u, PYTHONUNBUFFERED) may take a large write
    in part when the reader goes away, and its text layer would drop the rest without an error."""
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        out.write(text)
        out.flush()
        return
    out.flush()
    view = memoryview(text.encode(out.encoding or "utf-8", out.errors or "strict"))
    while view:
        written = buffer.write(view)
        if written is None:  # a non-blocking stdout that is full: wait until it takes more
            import select

            select.select([], [buffer], [])
            continue
        view = view[written:]
    buffer.flush()


def _discard_stdout() -> None:
    """Point fd 1 at /dev/null, so Python's final flush of what is left does not fail again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


@app.command()
@handled
def compare(
    a: str = typer.Argument(..., help="First embeddings: PATH or PATH:KEY (.npy, .npz, .h5, .parquet)."),
    b: str = typer.Argument(..., help="Second embeddings, same items in the same row order."),
    metric: Optional[List[str]] = typer.Option(
        None, "--metric", "-m", metavar="NAMES",
        help="mknn, cka, cka-unbiased; repeatable or comma-separated [default: mknn,cka]."),
    k: Optional[int] = typer.Option(
        None, "--k", "-k", metavar="K", help="Neighbours per item for mknn [default: 10]."),
    distance: str = typer.Option(
        "cosine", "--distance", "-d", metavar="DIST", help="Neighbour similarity: cosine, ip or l2."),
    clip: Optional[float] = typer.Option(
        None, "--clip", metavar="Q",
        help="Clamp |values| at this quantile of all entries first (the paper uses 0.95)."),
    normalize: Optional[bool] = typer.Option(
        None, "--normalize/--no-normalize", help="L2-normalise rows before every metric, CKA included."),
    preset: Optional[str] = typer.Option(
        None, "--preset", metavar="NAME",
        help="prh = the paper's pipeline: --clip 0.95 --normalize --k 10 (explicit options win)."),
    fmt: str = typer.Option("table", "--format", "-f", metavar="FORMAT", help="table, json, csv or markdown."),
    resamples: int = typer.Option(1000, "--resamples", "-B", metavar="B",
                                  help="Bootstrap replicates for confidence intervals; 0 switches them off."),
    confidence: float = typer.Option(0.95, "--confidence", metavar="LEVEL", help="Two-sided confidence level."),
    seed: Optional[int] = typer.Option(
        None, "--seed", metavar="S", help="Seed for resamples and permutations (drawn and reported if omitted)."),
    ci_method: str = typer.Option(
        "auto", "--ci-method", metavar="METHOD",
        help="auto, ij, normal, percentile, basic, bca (mknn) or jackknife (CKA, uncorrected); auto = each "
             "metric's validated default (mknn: ij; CKA: corrected jackknife)."),
    permutations: Optional[int] = typer.Option(
        None, "--permutations", "-P", metavar="P",
        help="Permutations for p-values and calibrated scores [default: 1000 for k-NN metrics, 200 for a "
             "best-over-layers p-value; given explicitly, CKA too]."),
    explain: bool = typer.Option(False, "--explain", help="Add one plain-language line per metric."),
    fail_under: Optional[List[str]] = typer.Option(
        None, "--fail-under", metavar="METRIC=X", help="Exit 1 if the metric is below X (repeatable)."),
    fail_above: Optional[List[str]] = typer.Option(
        None, "--fail-above", metavar="METRIC=X", help="Exit 1 if the metric is above X (repeatable)."),
    on: str = typer.Option("value", "--on", metavar="WHAT",
                           help="Apply --fail-under/--fail-above to: value, ci-low or ci-high."),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", metavar="FILE", help="An earlier repalign JSON report to compare with."),
    max_drop: Optional[List[str]] = typer.Option(
        None, "--max-drop", metavar="METRIC=X", help="Exit 1 if the metric fell by more than X since --baseline."),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", metavar="FILE",
        help="Also write the report to FILE, in the format its suffix names: .json, .csv, .md or .txt."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No warnings or notes on stderr; only the output."),
    allow_external: bool = typer.Option(
        False, "--allow-external", help="Follow HDF5 external links and virtual datasets that read other files."),
    ids: Optional[str] = typer.Option(
        None, "--ids", metavar="KEY",
        help="Pair items by this id column/dataset/member in both files (auto: the one named id, ids, key or name)."),
    ids_a: Optional[str] = typer.Option(None, "--ids-a", metavar="KEY", help="Id key in A (overrides --ids)."),
    ids_b: Optional[str] = typer.Option(None, "--ids-b", metavar="KEY", help="Id key in B (overrides --ids)."),
    require_all: bool = typer.Option(False, "--require-all", help="With ids: any item without a partner is an error."),
    max_rows: Optional[int] = typer.Option(
        None, "--max-rows", metavar="N", help="Evaluate on N randomly chosen paired items (same for both; --seed)."),
    layer_a: Optional[str] = typer.Option(
        None, "--layer-a", metavar="LAYERS",
        help="Layers of A (n×L×d array or KEY glob): all, 3, -1, 0:12:2 or 1,5,9 [default: all]."),
    layer_b: Optional[str] = typer.Option(None, "--layer-b", metavar="LAYERS", help="Layers of B, as --layer-a."),
    plot: Optional[str] = typer.Option(
        None, "--plot", metavar="FILE", help="Save the layer-sweep heatmap as .png, .svg or .pdf (needs matplotlib)."),
):
    """Score how alike two embeddings of the same items are.

    When either input has several layers (an n×L×d array, or KEY with a glob such as 'layers/*'), every
    pair of layers is scored: the table shows the matrix and each metric's best pair.
    """
    from repalign import checks, report
    from repalign.api import compare as run
    from repalign.metrics import REGISTRY, parse_metrics

    if fmt not in report.FORMATS:
        raise RepalignError(f"unknown --format '{fmt}' (choose from {', '.join(report.FORMATS)})")
    check_outputs([a, b], baseline, output=output, plot=plot)
    known = list(REGISTRY)
    gates = {"fail_under": checks.parse_bounds(fail_under, "--fail-under", known),
             "fail_above": checks.parse_bounds(fail_above, "--fail-above", known),
             "max_drop": checks.parse_bounds(max_drop, "--max-drop", known), "on": on, "baseline": baseline}
    checks.validate(parse_metrics(metric), resamples=resamples, **gates)
    progress = _Progress(quiet)
    try:
        result = run(a, b, metrics=metric, k=k, distance=distance, clip=clip, normalize=normalize, preset=preset,
                     resamples=resamples, confidence=confidence, seed=seed, ci_method=ci_method,
                     permutations=permutations, allow_external=allow_external, ids=ids, ids_a=ids_a, ids_b=ids_b,
                     require_all=require_all, max_rows=max_rows, layer_a=layer_a, layer_b=layer_b,
                     progress=progress)
    finally:
        progress.close()
    result = checks.evaluate(result, **gates)
    if plot is not None and result.sweep is None:
        raise RepalignError("--plot draws a layer sweep; both inputs have a single layer here (give an n×L×d "
                            "array or a KEY glob, or use repalign matrix)")
    _finish(result, fmt=fmt, output=output, plot=plot, quiet=quiet, explain=explain)


def _finish(result, *, fmt: str, output: str | None, plot: str | None, quiet: bool, explain: bool = False) -> None:
    """Warnings, report file, plot, the output itself, failed checks, and exit 1 if any check failed."""
    from repalign import report

    if not quiet:
        for note in result.notes:
            _err(f"warning: {note}")
    if output is not None:
        report.write(result, output)
    if plot is not None:
        report.PLOT.save(result, plot)
    _emit(report.table(result, explain=explain) if fmt == "table" else report.FORMATTERS[fmt].format(result),
          is_json=fmt == "json")
    if explain and fmt != "table" and not quiet:
        # Keep stdout machine-readable; the explanation is for the person at the terminal.
        for line in report.explain_lines(result):
            _err(line)
    for c in result.checks:
        if not c.passed:
            _err(f"FAIL: {c.message} (--{c.kind})")
    if result.failed:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command()
@handled
def matrix(
    inputs: List[str] = typer.Argument(..., metavar="INPUT...", help="Two or more embeddings: PATH or PATH:KEY."),
    reference: Optional[str] = typer.Option(
        None, "--reference", "-r", metavar="INPUT",
        help="Compare every INPUT with this one only (results sorted best first) instead of every pair."),
    metric: Optional[List[str]] = typer.Option(
        None, "--metric", "-m", metavar="NAMES",
        help="mknn, cka, cka-unbiased; repeatable or comma-separated [default: mknn,cka]."),
    k: Optional[int] = typer.Option(None, "--k", "-k", metavar="K", help="Neighbours per item for mknn [default: 10]."),
    distance: str = typer.Option("cosine", "--distance", "-d", metavar="DIST", help="cosine, ip or l2."),
    clip: Optional[float] = typer.Option(None, "--clip", metavar="Q", help="Clamp |values| at this quantile first."),
    normalize: Optional[bool] = typer.Option(None, "--normalize/--no-normalize",
                                             help="L2-normalise rows before every metric."),
    preset: Optional[str] = typer.Option(None, "--preset", metavar="NAME", help="prh = the paper's pipeline."),
    fmt: str = typer.Option("table", "--format", "-f", metavar="FORMAT", help="table, json, csv or markdown."),
    resamples: int = typer.Option(1000, "--resamples", "-B", metavar="B", help="Bootstrap replicates; 0: off."),
    confidence: float = typer.Option(0.95, "--confidence", metavar="LEVEL", help="Two-sided confidence level."),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="S", help="Seed for resamples and permutations."),
    ci_method: str = typer.Option("auto", "--ci-method", metavar="METHOD",
                                  help="auto, ij, normal, percentile, basic, bca (mknn) or jackknife (CKA)."),
    permutations: Optional[int] = typer.Option(
        None, "--permutations", "-P", metavar="P",
        help="Permutations for p-values [default: 1000 for k-NN metrics, 200 for a best-over-layers p-value; "
             "given explicitly, CKA too]."),
    fail_under: Optional[List[str]] = typer.Option(
        None, "--fail-under", metavar="METRIC=X", help="Exit 1 if any pair's metric is below X (repeatable)."),
    fail_above: Optional[List[str]] = typer.Option(
        None, "--fail-above", metavar="METRIC=X", help="Exit 1 if any pair's metric is above X (repeatable)."),
    on: str = typer.Option("value", "--on", metavar="WHAT", help="Apply the bounds to: value, ci-low or ci-high."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE",
                                         help="Also write the report to FILE: .json, .csv, .md or .txt."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No warnings or notes on stderr; only the output."),
    allow_external: bool = typer.Option(False, "--allow-external",
                                        help="Follow HDF5 external links and virtual datasets."),
    ids: Optional[str] = typer.Option(
        None, "--ids", metavar="KEY",
        help="Pair items by this id array in every file (auto: the one named id, ids, key or name)."),
    require_all: bool = typer.Option(False, "--require-all", help="With ids: any item missing anywhere is an error."),
    max_rows: Optional[int] = typer.Option(None, "--max-rows", metavar="N",
                                           help="Evaluate on N randomly chosen paired items (--seed)."),
    layers: Optional[str] = typer.Option(
        None, "--layers", metavar="LAYERS",
        help="Layers of every layered input: all, 3, -1, 0:12:2 or 1,5,9 [default: all; best pair per cell]."),
    plot: Optional[str] = typer.Option(None, "--plot", metavar="FILE",
                                       help="Save the heatmap as .png, .svg or .pdf (needs matplotlib)."),
):
    """Alignment of every pair of several embeddings of the same items (or each against --reference)."""
    from repalign import checks, report
    from repalign.api import matrix as run
    from repalign.metrics import REGISTRY, parse_metrics

    if fmt not in report.FORMATS:
        raise RepalignError(f"unknown --format '{fmt}' (choose from {', '.join(report.FORMATS)})")
    check_outputs(inputs + ([reference] if reference else []), output=output, plot=plot)
    known = list(REGISTRY)
    gates = {"fail_under": checks.parse_bounds(fail_under, "--fail-under", known),
             "fail_above": checks.parse_bounds(fail_above, "--fail-above", known), "on": on}
    checks.validate(parse_metrics(metric), resamples=resamples, **gates)
    progress = _Progress(quiet)
    try:
        result = run(inputs, reference=reference, metrics=metric, k=k, distance=distance, clip=clip,
                     normalize=normalize, preset=preset, resamples=resamples, confidence=confidence, seed=seed,
                     ci_method=ci_method, permutations=permutations, allow_external=allow_external, ids=ids,
                     require_all=require_all, max_rows=max_rows, layers=layers, progress=progress)
    finally:
        progress.close()
    result = checks.evaluate_matrix(result, **gates)
    _finish(result, fmt=fmt, output=output, plot=plot, quiet=quiet)


@app.command()
@handled
def inspect(
    path: str = typer.Argument(..., metavar="FILE", help="An .npy, .npz, .h5/.hdf5 or .parquet file."),
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
        _emit(json.dumps(clean_tree({"path": path, "arrays": rows}), indent=2, ensure_ascii=False) + "\n", is_json=True)
        return
    from rich.table import Table

    t = Table(title=shown(path), show_edge=False, header_style="bold")
    t.add_column("key")
    t.add_column("shape", justify="right")
    t.add_column("dtype")
    t.add_column("usable")
    for i in infos:
        shape = "×".join("?" if s is None else str(s) for s in i.shape)
        usable = "yes" if i.embedding_like else f"{i.shape[1]} layers" if i.layered else ""
        t.add_row(shown(i.name) if i.name else "(whole file)", shape, shown(i.dtype), usable)
    _emit(t)


@app.command()
@handled
def schema():
    """Print the JSON Schema (draft 2020-12) that every --format json report follows."""
    from importlib.resources import files

    _emit(files("repalign").joinpath("schema/report.schema.json").read_text(encoding="utf-8"), is_json=True)


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that every ``finally`` (temporary files) runs."""


def _on_sigterm(signum, frame):
    raise Terminated


def _reserve_std_fds() -> None:
    """Put /dev/null on a closed fd 0, 1 or 2, so no file we open takes its place and receives stray output.

    Python has already set sys.stdout (or stderr) to None for a closed descriptor, so writing
    the result still fails as it should.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # takes the lowest free descriptor: this one


def main() -> None:
    """Console-script entry point. SIGTERM exits 143 (128 + 15, as the shell reports a kill) after cleanup."""
    _reserve_std_fds()
    signal.signal(signal.SIGTERM, _on_sigterm)
    if hasattr(signal, "SIGXFSZ"):
        # Past a file size limit (ulimit -f) the write then fails with EFBIG and is reported, instead of
        # the process being killed half-way through a file.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        app()
    except Terminated:
        sys.exit(EXIT_TERMINATED)
