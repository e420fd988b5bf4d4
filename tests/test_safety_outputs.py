"""Outputs never destroy a file: no overwriting inputs, atomic writes, strict suffixes, failing streams,
ASCII locales and hostile names. Subprocesses where the operating system is part of the test."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import golden_pair
from test_cli import run

from repalign import safe_write
from repalign.errors import RepalignError
from repalign.text import shown

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--resamples", "0", "--permutations", "0"]
SUFFIX_LIST = ".json, .csv, .md, .markdown, .txt"


def snapshot(folder: Path) -> dict:
    """Every entry of ``folder`` (bytes names, so undecodable ones too) with its bytes or link target."""
    out = {}
    for name in os.listdir(os.fsencode(folder)):
        p = os.path.join(os.fsencode(folder), name)
        out[name] = os.readlink(p) if os.path.islink(p) else sorted(os.listdir(p)) if os.path.isdir(p) \
            else open(p, "rb").read()
    return out


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def env_for(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "PYTHONIOENCODING")}
    env.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", COLUMNS="120", **extra)
    return env


def cli(*args, cwd, env=None, **kw) -> subprocess.CompletedProcess:
    """The real command in a child process (argv may hold bytes, e.g. a file name that is not UTF-8)."""
    streams = {"stdout": kw.pop("stdout", subprocess.PIPE), "stderr": kw.pop("stderr", subprocess.PIPE)}
    return subprocess.run([sys.executable, "-m", "repalign", *args], cwd=cwd, env=env or env_for(),
                          timeout=300, **streams, **kw)


def bash(script: str, cwd) -> subprocess.CompletedProcess:
    """``script`` under bash, where $R is the repalign command; stdout and stderr captured unless redirected."""
    env = env_for(R=f"{sys.executable} -m repalign")
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, timeout=300)


@pytest.fixture
def data(tmp_path):
    X, Y = golden_pair()
    np.save(tmp_path / "a.npy", X)
    np.save(tmp_path / "b.npy", Y)
    return tmp_path


@pytest.fixture
def no_work(monkeypatch):
    """Refusals must come before any work: the computation itself fails the test if reached."""
    import repalign.api

    def forbidden(*args, **kwargs):
        raise AssertionError("the computation ran before the output check")

    monkeypatch.setattr(repalign.api, "compare", forbidden)
    monkeypatch.setattr(repalign.api, "matrix", forbidden)


# ------------------------------------------------------------------ 1. no run destroys a file it did not create

def _link(kind: str, src: Path, dst: Path) -> None:
    (os.symlink if kind == "symlink" else os.link)(src.name if kind == "symlink" else src, dst)


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
@pytest.mark.parametrize("case", ["compare-a", "compare-b-key", "matrix-input", "matrix-reference", "plot"])
def test_output_that_is_an_input_is_refused(data, no_work, kind, case):
    import h5py

    with h5py.File(data / "c.h5", "w") as f:
        f["emb"] = golden_pair()[1]
    a, b, c = (str(data / n) for n in ("a.npy", "b.npy", "c.h5"))
    victim, option, out = {"compare-a": (a, "-o", "r.json"), "compare-b-key": (c, "-o", "r.csv"),
                           "matrix-input": (b, "--output", "r.md"), "matrix-reference": (c, "-o", "r.txt"),
                           "plot": (a, "--plot", "p.png")}[case]
    out = str(data / out)
    _link(kind, Path(victim), Path(out))
    args = {"compare-a": ["compare", a, f"{c}:emb"], "compare-b-key": ["compare", a, f"{c}:emb"],
            "matrix-input": ["matrix", a, b, f"{c}:emb"], "matrix-reference": ["matrix", a, b, "-r", f"{c}:emb"],
            "plot": ["matrix", a, b]}[case]
    before = snapshot(data)
    r = run(*args, *FAST, option, out)
    assert r.exit_code == 2, r.output
    line = one_error_line(r.stderr)
    assert out in line and victim in line
    assert f"{'--plot' if option == '--plot' else '--output'} would overwrite the input" in line
    assert snapshot(data) == before


def test_output_named_like_the_input_is_refused(data, no_work):
    """The reported bug: `compare x.npy b.npy -o x.npy` replaced the input with the JSON report."""
    before = snapshot(data)
    r = run("compare", data / "a.npy", data / "b.npy", "-o", data / "a.npy")
    assert r.exit_code == 2 and str(data / "a.npy") in one_error_line(r.stderr)
    assert snapshot(data) == before


def test_output_onto_an_input_named_with_its_format_is_refused(data, no_work):
    """`compare x.json@npy b.npy -o x.json`: the '@FORMAT' is not part of the file written over."""
    os.rename(data / "a.npy", data / "x.json")
    before = snapshot(data)
    r = run("compare", f"{data / 'x.json'}@npy", data / "b.npy", "-o", data / "x.json")
    assert r.exit_code == 2, r.output
    line = one_error_line(r.stderr)
    assert "--output would overwrite the input" in line and str(data / "x.json") in line
    assert snapshot(data) == before


def test_output_onto_the_baseline_is_refused(data):
    base = data / "base.json"
    assert run("compare", data / "a.npy", data / "b.npy", *FAST, "-o", base).exit_code == 0
    before = snapshot(data)
    r = run("compare", data / "a.npy", data / "b.npy", *FAST, "--baseline", base, "-o", base)
    assert r.exit_code == 2 and "would overwrite the --baseline file" in one_error_line(r.stderr)
    assert snapshot(data) == before


def test_plot_onto_the_output_is_refused(data, no_work):
    (data / "p.png").symlink_to("r.json")  # dangling: compared by real path
    before = snapshot(data)
    r = run("matrix", data / "a.npy", data / "b.npy", "-o", data / "r.json", "--plot", data / "p.png")
    line = one_error_line(r.stderr)
    assert r.exit_code == 2 and "--plot would overwrite the --output file" in line and "r.json" in line
    assert snapshot(data) == before


def test_outputs_in_the_same_folder_as_inputs_are_fine(data):
    r = run("matrix", data / "a.npy", data / "b.npy", *FAST, "-o", data / "r.json", "--plot", data / "p.svg")
    assert r.exit_code == 0, r.stderr
    assert json.loads((data / "r.json").read_text())["kind"] == "matrix"
    assert (data / "p.svg").read_text().lstrip().startswith("<?xml")


# ------------------------------------------------------------------ 3. the report format follows the suffix

@pytest.mark.parametrize("suffix,check", [
    (".json", lambda t: json.loads(t)["n"] == 100),
    (".JSON", lambda t: json.loads(t)["n"] == 100),
    (".csv", lambda t: t.startswith("metric,value,")),
    (".md", lambda t: t.startswith("**repalign")),
    (".markdown", lambda t: t.startswith("**repalign")),
    (".txt", lambda t: "100 paired items" in t and "{" not in t),
])
def test_report_format_follows_suffix(data, suffix, check):
    out = data / f"report{suffix}"
    r = run("compare", data / "a.npy", data / "b.npy", *FAST, "-o", out)
    assert r.exit_code == 0, r.stderr
    assert check(out.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["report.xyz", "report", "report.yaml", "report.json.bak"])
def test_unknown_output_suffix_is_refused_before_work(data, no_work, name):
    before = snapshot(data)
    r = run("compare", data / "a.npy", data / "b.npy", "-o", data / name)
    line = one_error_line(r.stderr)
    assert r.exit_code == 2 and name in line and SUFFIX_LIST in line
    assert snapshot(data) == before


def test_help_and_readme_name_the_suffixes():
    text = run("compare", "--help").stdout + (ROOT / "README.md").read_text(encoding="utf-8")
    assert "JSON otherwise" not in text and "JSON for anything else" not in text
    assert ".txt" in run("matrix", "--help").stdout


# ------------------------------------------------------------------ 2. atomic writes

def _tiny_fsize():
    resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))


@pytest.mark.parametrize("command,option,name", [("compare", "-o", "r.json"), ("matrix", "--plot", "m.png")])
def test_file_size_limit_leaves_previous_file(data, command, option, name):
    (data / name).write_bytes(b"previous contents\n")
    before = snapshot(data)
    p = cli(command, "a.npy", "b.npy", *FAST, option, name, "-f", "csv", cwd=data, preexec_fn=_tiny_fsize)
    assert p.returncode == 2, p.stderr
    line = one_error_line(p.stderr.decode())
    assert name in line and "File too large" in line
    assert snapshot(data) == before  # byte-identical and no temporary file left


SIGTERM_MID_WRITE = """
import os, signal, sys
real_fsync = os.fsync
def fsync(fd):  # the data is in the temporary file; the signal arrives before it replaces the target
    os.kill(os.getpid(), signal.SIGTERM)
    real_fsync(fd)
os.fsync = fsync
from repalign.cli import main
sys.argv = ["repalign"] + sys.argv[1:]
main()
"""


@pytest.mark.parametrize("command,option,name", [("compare", "-o", "r.json"), ("matrix", "--plot", "m.pdf")])
def test_sigterm_mid_write_leaves_previous_file(data, command, option, name):
    (data / name).write_bytes(b"previous contents\n")
    before = snapshot(data)
    p = subprocess.run([sys.executable, "-c", SIGTERM_MID_WRITE, command, "a.npy", "b.npy", *FAST, option, name],
                       cwd=data, env=env_for(), capture_output=True, timeout=300)
    assert p.returncode == 128 + signal.SIGTERM, p.stderr
    assert b"Traceback" not in p.stderr
    assert snapshot(data) == before


def test_disk_full_mid_write_leaves_previous_file(data, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (data / "r.md").write_bytes(b"previous contents\n")
    before = snapshot(data)
    monkeypatch.setattr(safe_write.os, "fsync", full)
    r = run("compare", data / "a.npy", data / "b.npy", *FAST, "-o", data / "r.md")
    assert r.exit_code == 2
    assert one_error_line(r.stderr) == f"Error: {data / 'r.md'}: cannot write the report (No space left on device)"
    monkeypatch.undo()
    assert snapshot(data) == before


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     UnicodeEncodeError("ascii", "é", 0, 1, "no"), KeyboardInterrupt()])
def test_writer_failing_half_way(tmp_path, failure):
    target = tmp_path / "out.txt"
    target.write_bytes(b"old")

    def fill(f):
        f.write(b"half of the new ")
        f.flush()
        raise failure

    with pytest.raises(RepalignError if isinstance(failure, OSError) else type(failure)) as info:
        safe_write.write_atomic(str(target), fill)
    if isinstance(failure, OSError):
        assert str(info.value) == f"{target}: cannot write the report (No space left on device)"
    assert snapshot(tmp_path) == {b"out.txt": b"old"}


def test_permissions_kept_and_new_files_follow_umask(tmp_path):
    old = tmp_path / "old.txt"
    old.write_bytes(b"old")
    old.chmod(0o640)
    safe_write.write_atomic(str(old), b"new")
    assert old.read_bytes() == b"new" and (old.stat().st_mode & 0o777) == 0o640
    mask = os.umask(0o027)
    try:
        safe_write.write_atomic(str(tmp_path / "fresh.txt"), b"x")
    finally:
        os.umask(mask)
    assert (tmp_path / "fresh.txt").stat().st_mode & 0o777 == 0o640


def test_symlinked_output_replaces_its_target(data):
    (data / "real.json").write_text("{}")
    (data / "link.json").symlink_to("real.json")
    assert run("compare", data / "a.npy", data / "b.npy", *FAST, "-o", data / "link.json").exit_code == 0
    assert os.readlink(data / "link.json") == "real.json"
    assert json.loads((data / "real.json").read_text())["n"] == 100


@pytest.mark.parametrize("option,name,needle", [("-o", "nowhere/r.json", "no directory"),
                                                 ("-o", "folder.json", "it is a directory"),
                                                 ("--plot", "folder.json/../nowhere/p.png", "no directory")])
def test_unwritable_output_refused_before_work(data, no_work, option, name, needle):
    (data / "folder.json").mkdir()
    before = snapshot(data)
    r = run("matrix", data / "a.npy", data / "b.npy", option, data / name)
    assert r.exit_code == 2 and needle in one_error_line(r.stderr)
    assert snapshot(data) == before


# ------------------------------------------------------------------ 4. output that cannot be written

@pytest.mark.parametrize("redirect,expected", [
    ("> /dev/full", "Error: cannot write to standard output (No space left on device)"),
    (">&-", "Error: cannot write to standard output (it is closed)"),
])
@pytest.mark.parametrize("command", ["compare a.npy b.npy", "matrix a.npy b.npy -f json", "inspect a.npy"])
def test_stdout_that_fails(data, redirect, expected, command):
    before = snapshot(data)
    p = bash(f"$R {command} {' '.join(FAST) if 'inspect' not in command else ''} {redirect}", data)
    assert p.returncode == 2 and p.stderr.decode() == expected + "\n"
    assert snapshot(data) == before


def test_broken_pipe(data):
    """More output than a pipe holds, read by `head -c1`: the write fails with EPIPE after head exits."""
    np.savez(data / "many.npz", **{f"array_{i:04d}": np.zeros((2, 2)) for i in range(1500)})
    p = bash("$R inspect many.npz -f json | head -c1 >/dev/null; exit ${PIPESTATUS[0]}", data)
    assert p.returncode == 2 and p.stderr.decode() == "Error: cannot write to standard output (Broken pipe)\n"


def test_pipe_closed_before_the_run(data):
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        p = cli("compare", "a.npy", "b.npy", *FAST, cwd=data, stdout=write_end)
    finally:
        os.close(write_end)
    assert p.returncode == 2 and p.stderr.decode() == "Error: cannot write to standard output (Broken pipe)\n"


@pytest.mark.parametrize("redirect", ["2>&-", "2>/dev/full"])
def test_stderr_gone_is_silence(data, redirect):
    p = bash(f"$R compare a.npy missing.npy {redirect}", data)
    assert p.returncode == 2 and p.stdout == b"" and b"Traceback" not in p.stderr
    ok = bash(f"$R compare a.npy b.npy {' '.join(FAST)} -f json {redirect}", data)
    assert ok.returncode == 0 and json.loads(ok.stdout)["n"] == 100
    both = bash(f"$R compare a.npy b.npy {' '.join(FAST)} >&- {redirect}", data)
    assert both.returncode == 2 and both.stderr == b""


# ------------------------------------------------------------------ 5. locales without UTF-8

@pytest.mark.parametrize("setting", [{"LC_ALL": "C"}, {"PYTHONIOENCODING": "ascii"}])
@pytest.mark.parametrize("args", [
    ["compare", "a.npy", "b.npy", *FAST, "--explain", "--fail-under", "mknn=0"],
    ["compare", "a.npy", "b.npy", *FAST, "-f", "markdown", "--explain"],
    ["matrix", "a.npy", "b.npy", "a.npy", *FAST],
    ["inspect", "a.npy"],
])
def test_ascii_locales(data, setting, args):
    p = cli(*args, cwd=data, env=env_for(**setting))
    assert p.returncode == 0, p.stderr
    out, err = p.stdout.decode("ascii"), p.stderr.decode("ascii")  # raises if anything is not ASCII
    assert "100x10" in out and "Traceback" not in err
    if args[0] != "inspect" and "markdown" not in args:
        assert "+/-" in out and "|" in out  # our symbols spelled out, the box drawn in ASCII


@pytest.mark.parametrize("setting", [{"LC_ALL": "C"}, {"PYTHONIOENCODING": "ascii"}])
def test_ascii_locale_errors_and_warnings(data, setting):
    np.save(data / "é×.npy", np.zeros((100, 3)))
    p = cli("compare", "é×.npy", "b.npy", *FAST, cwd=data, env=env_for(**setting))
    line = one_error_line(p.stderr.decode("ascii"))  # the all-zero rows, for a name that is not ASCII
    assert p.returncode == 2 and line.startswith("Error: \\xe9x.npy: all-zero rows")
    gate = cli("compare", "a.npy", "b.npy", *FAST, "-f", "json", "--explain", "--fail-under", "cka=0.99",
               cwd=data, env=env_for(**setting))
    err = gate.stderr.decode("ascii")
    assert gate.returncode == 1 and "FAIL: cka" in err and "cka = " in err


# ------------------------------------------------------------------ 6. names cannot forge or garble

NAMES = {"newline": "new\nline.npy", "ansi": "\x1b[31mred.npy", "markup": "[bold]x.npy", "emoji": ":smile:.npy"}


@pytest.fixture
def hostile(data):
    X, Y = golden_pair()
    for name in NAMES.values():
        np.save(data / name, X)
    with open(os.path.join(os.fsencode(data), b"bad\xff.npy"), "wb") as f:
        np.save(f, Y)
    return data


def test_shown_is_one_printable_line():
    for name in [*NAMES.values(), "bad\udcff.npy", "tab\there", "\u2028sep"]:
        text = shown(name)
        assert text.isprintable() and "\n" not in text and "\x1b" not in text
        assert text.encode("utf-8")  # no lone surrogate left
    assert shown("new\nline") == "new\\nline" and shown("bad\udcff") == "bad\\xff" and shown("[bold]") == "[bold]"


@pytest.mark.parametrize("key", [*NAMES, "bad"])
def test_errors_show_hostile_names_escaped_on_one_line(hostile, key):
    name = os.fsencode(NAMES.get(key, "bad\udcff.npy"))
    p = cli("compare", name + b":nokey", "b.npy", cwd=hostile)
    err = p.stderr.decode("utf-8")  # strict: valid UTF-8
    line = one_error_line(err)
    assert p.returncode == 2 and "\x1b" not in err
    assert shown(os.fsdecode(name)) in line


def test_tables_show_hostile_names_literally(hostile):
    names = [os.fsencode(n) for n in NAMES.values()] + [b"bad\xff.npy"]
    p = cli("matrix", *names, *FAST, "-m", "cka", cwd=hostile, env=env_for(FORCE_COLOR="1", NO_COLOR="1"))
    out = p.stdout.decode("utf-8")
    assert p.returncode == 0, p.stderr
    assert "\x1b" not in out
    for n in [*NAMES.values(), "bad\\xff.npy"]:
        assert shown(n) in out  # markup, emoji codes and escapes shown as typed, each on its row's line
    assert "new\\nline.npy" in out and "[bold]x.npy" in out and ":smile:" in out


@pytest.mark.parametrize("fmt", ["json", "csv", "markdown"])
def test_reports_with_undecodable_names_are_utf8(hostile, fmt):
    p = cli("compare", b"bad\xff.npy", NAMES["newline"], *FAST, "-f", fmt, "-o", b"out\xff.json", cwd=hostile)
    assert p.returncode == 0, p.stderr
    text = p.stdout.decode("utf-8")
    saved = json.loads(open(os.path.join(os.fsencode(hostile), b"out\xff.json"), "rb").read().decode("utf-8"))
    assert saved["inputs"][0]["path"] == "bad\\xff.npy" and saved["inputs"][1]["path"] == NAMES["newline"]
    if fmt == "json":
        assert json.loads(text)["inputs"][0]["path"] == "bad\\xff.npy"
    else:
        assert "bad\\xff.npy" in text


def test_no_color_means_no_escape_codes_even_on_a_forced_terminal(data):
    args = ["compare", "a.npy", "b.npy", *FAST, "--fail-under", "cka=0.99"]
    coloured = cli(*args, cwd=data, env=env_for(FORCE_COLOR="1"))
    assert b"\x1b[" in coloured.stdout  # the control: a forced terminal does get styles
    plain = cli(*args, cwd=data, env=env_for(FORCE_COLOR="1", NO_COLOR="1"))
    assert plain.returncode == 1 and b"\x1b" not in plain.stdout + plain.stderr
    assert "FAIL" in plain.stdout.decode() and b"FAIL: cka" in plain.stderr


def test_no_color_switches_the_spinner_off(monkeypatch):
    from repalign.console import Progress as _Progress

    class Tty:
        encoding = "utf-8"

        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    on = _Progress(quiet=False)
    assert on.timer is not None  # the control: a terminal gets a spinner
    on.close()
    monkeypatch.setenv("NO_COLOR", "1")
    assert _Progress(quiet=False).timer is None


@pytest.mark.parametrize("setting", [{"LC_ALL": "C"}, {"PYTHONIOENCODING": "ascii"}])
@pytest.mark.parametrize("command", ["compare", "inspect"])
def test_ascii_locale_json_stays_exact(data, setting, command):
    np.save(data / "é×.npy", golden_pair()[0])
    args = ["compare", "é×.npy", "b.npy", *FAST] if command == "compare" else ["inspect", "é×.npy"]
    p = cli(*args, "-f", "json", cwd=data, env=env_for(**setting))
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout.decode("ascii"))  # JSON's own \u escapes, not \x text
    assert (doc["inputs"][0]["path"] if command == "compare" else doc["path"]) == "é×.npy"


@pytest.mark.parametrize("args", [["\x1b[31mred"], ["compare", "a.npy", "b.npy", "new\nline"],
                                  ["compare", "a.npy", "b.npy", "--k", "\x1b[2J"]])
def test_usage_errors_escape_what_was_typed(args):
    r = run(*args)
    assert r.exit_code == 2 and "\x1b" not in r.stderr and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and ("\\x1b" in last or "new\\" in last or "'--k'" in last)
