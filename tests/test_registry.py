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
