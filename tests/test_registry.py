"""Every metric, output format, option and command is reachable from the CLI and documented in the README.

Names are matched whole (a `-` is part of a name), so `cka` is not found inside `cka-unbiased` nor `--ids`
inside `--ids-a`.
"""

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import typer.main
from conftest import make_pair
from typer.testing import CliRunner

from repalign import report
from repalign.cli import app
from repalign.metrics import REGISTRY

README = (Path(__file__).parent.parent / "README.md").read_text()
COMMANDS = typer.main.get_command(app).commands
FAST = ["--resamples", "0", "--permutations", "0"]


def words(text: str) -> set[str]:
    """Names in running text: letters, digits, `_` and `-`, so `cka-unbiased` is one word and `cka` another."""
    return set(re.findall(r"[A-Za-z0-9][A-Za-z0-9_-]*", text))


def long_options(text: str) -> set[str]:
    return set(re.findall(r"--[a-z0-9][a-z0-9-]*", text))


def option_help(command: str, option: str) -> str:
    return next(p.help for p in COMMANDS[command].params if option in p.opts)


def _long_options(command):
    cmd = COMMANDS[command]
    return sorted({o for p in cmd.params for o in list(p.opts) + list(getattr(p, "secondary_opts", []))
                   if o.startswith("--") and o != "--help"})


def test_tokenisers_match_whole_names():
    """The helpers above must tell a name from a longer name that contains it."""
    assert "cka" not in words("mknn, cka-unbiased; repeatable")
    assert {"cka", "cka-unbiased", "mknn"} <= words("mknn, cka, cka-unbiased.")
    assert "--ids" not in long_options("--ids-a KEY and --ids-b KEY")
    assert "--k" not in long_options("--keep") and "--k" in long_options("`--k 10`")


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    X, Y = make_pair(np.random.default_rng(0), n=40, d1=12, d2=11)  # svcca keeps 10 directions by default
    np.save(root / "a.npy", X)
    np.save(root / "b.npy", Y)
    return [str(root / "a.npy"), str(root / "b.npy")]


def run(args):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


@pytest.mark.parametrize("name", list(REGISTRY))
def test_metric_documented_and_reachable(name, pair_files):
    assert f"`{name}`" in README
    assert name in words(option_help("compare", "--metric"))
    doc = json.loads(run(["compare", *pair_files, "-m", name, "-f", "json", *FAST]))
    assert [m["name"] for m in doc["metrics"]] == [name]


def _parse(fmt: str, text: str) -> list[str]:
    """The metric names in a report, read the way each format is read."""
    if fmt == "json":
        return [m["name"] for m in json.loads(text)["metrics"]]
    if fmt == "csv":
        return [row["metric"] for row in csv.DictReader(io.StringIO(text))]
    if fmt == "markdown":
        return [line.split("|")[1].strip() for line in text.splitlines()
                if line.startswith("| ") and not line.startswith("| metric")]
    return [line.split("│")[0].strip() for line in text.splitlines() if "│" in line]  # the table's body rows


@pytest.mark.parametrize("fmt", report.FORMATS)
def test_format_documented_and_reachable(fmt, pair_files):
    assert f"`{fmt}`" in README
    assert fmt in words(option_help("compare", "--format"))
    assert _parse(fmt, run(["compare", *pair_files, "-m", "mknn,cka", "-f", fmt, *FAST])) == ["mknn", "cka"]


def test_exit_codes_documented():
    for code in ("| 0 |", "| 2 |", "| 3 |"):
        assert code in README


@pytest.mark.parametrize("option", _long_options("compare"))
def test_every_compare_option_documented(option):
    assert option in long_options(README), option


@pytest.mark.parametrize("option", _long_options("matrix"))
def test_every_matrix_option_documented(option):
    assert option in long_options(README), option


@pytest.mark.parametrize("command", ["compare", "matrix", "inspect", "schema"])
def test_every_command_documented(command):
    assert command in COMMANDS
    assert command in set(re.findall(r"\brepalign ([a-z]+)\b", README))


def test_every_reader_format_is_in_the_report_schema():
    """A report names its inputs' formats; the schema must accept every format a reader is registered for."""
    import json
    from importlib.resources import files

    from repalign.io.readers import READERS

    schema = json.loads(files("repalign").joinpath("schema/report.schema.json").read_text(encoding="utf-8"))
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "enum" in node and "npy" in node["enum"]:
                found.append(set(node["enum"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    assert found and all(set(READERS) | {"array"} <= enum for enum in found)


def test_readme_metric_table_is_the_registry():
    from repalign.metrics.catalogue import markdown

    block = README.split("<!-- metrics table: generated by `repalign metrics -f markdown` -->\n")[1]
    assert block.split("<!-- end of metrics table -->")[0] == markdown(REGISTRY)


def test_packaged_schema_names_every_metric():
    from importlib.resources import files

    schema = json.loads(files("repalign").joinpath("schema/report.schema.json").read_text(encoding="utf-8"))
    assert schema["$defs"]["metric"]["properties"]["name"]["enum"] == list(REGISTRY)
