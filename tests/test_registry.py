"""Every metric, output format and command is reachable from the CLI and documented in the README."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from repalign import report
from repalign.cli import app
from repalign.metrics import REGISTRY

README = (Path(__file__).parent.parent / "README.md").read_text()
HELP = CliRunner().invoke(app, ["compare", "--help"], env={"COLUMNS": "200"}).stdout


@pytest.mark.parametrize("name", list(REGISTRY))
def test_metric_documented_and_reachable(name):
    assert f"`{name}`" in README
    assert name in HELP


@pytest.mark.parametrize("fmt", report.FORMATS)
def test_format_documented_and_reachable(fmt):
    assert f"`{fmt}`" in README and fmt in HELP


@pytest.mark.parametrize("command", ["compare", "inspect"])
def test_commands_documented(command):
    assert f"repalign {command}" in README


def test_exit_codes_documented():
    for code in ("| 0 |", "| 2 |", "| 3 |"):
        assert code in README


def _long_options(command):
    import typer.main

    cmd = typer.main.get_command(app).commands[command]
    return sorted({o for p in cmd.params for o in list(p.opts) + list(getattr(p, "secondary_opts", []))
                   if o.startswith("--") and o != "--help"})


@pytest.mark.parametrize("option", _long_options("compare"))
def test_every_compare_option_documented(option):
    assert option in README, option


@pytest.mark.parametrize("option", _long_options("matrix"))
def test_every_matrix_option_documented(option):
    assert option in README, option


@pytest.mark.parametrize("command", ["compare", "matrix", "inspect", "schema"])
def test_every_command_documented(command):
    assert f"repalign {command}" in README
