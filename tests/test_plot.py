"""The heatmap writer: formats, sizes, undefined cells and a missing matplotlib."""

import struct
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from repalign.errors import UsageError

pytest.importorskip("matplotlib")

from repalign.report.layout import PNG_DPI, figure_size, geometry, text_in, tick_labels, wrap
from repalign.report.plot import save_heatmaps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_panels(rng, nrows=3, ncols=4):
    """Two panels (a 0..1 metric and a -1..1 metric) over the same nrows x ncols layer grid."""
    rows = [f"r{i}" for i in range(nrows)]
    cols = [f"c{j}" for j in range(ncols)]
    common = {"row_labels": rows, "col_labels": cols, "row_axis": "layer of a (a.h5:layers)",
              "col_axis": "layer of b (b.h5:layers)"}
    return [
        dict(common, title="mknn", values=rng.uniform(0, 1, (nrows, ncols)).tolist(), vmin=0.0, vmax=1.0,
             best=(1, 2), annotate=True),
        dict(common, title="cka", values=rng.uniform(-1, 1, (nrows, ncols)), vmin=-1.0, vmax=1.0, best=None),
    ]


def png_size(path):
    """Width and height in pixels from the IHDR chunk (bytes 16..24, two big-endian uint32)."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_png_has_the_size_of_the_figure_rule(rng, tmp_path):
    panels = make_panels(rng)
    out = tmp_path / "heat.png"
    save_heatmaps(str(out), panels, title="a vs b")
    w_in, h_in = figure_size(panels, "a vs b")
    # Sizes are multiples of 0.5 in, so size x 150 dpi is a whole number of pixels and the match is exact
    # (no bbox_inches="tight", which would crop the canvas to its content).
    assert (w_in * 2).is_integer() and (h_in * 2).is_integer()
    assert png_size(out) == (round(w_in * PNG_DPI), round(h_in * PNG_DPI))


def test_figure_grows_with_the_matrix_within_limits(rng):
    small = figure_size(make_panels(rng, 3, 4))
    big = figure_size(make_panels(rng, 30, 40))
    huge = figure_size(make_panels(rng, 500, 500))
    assert big[0] > small[0] and big[1] > small[1]
    assert huge[0] <= 48 and huge[1] <= 16
    assert small[0] >= 4 and small[1] >= 2


def test_svg_parses_and_keeps_titles_and_ticks_as_text(rng, tmp_path):
    out = tmp_path / "heat.svg"
    panels = make_panels(rng)
    save_heatmaps(str(out), panels)
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    text = " ".join(t.strip() for t in root.itertext() if t.strip())
    for word in ["mknn", "cka", "r0", "r2", "c0", "c3", "layer of a (a.h5:layers)"]:
        assert word in text
    assert f"{panels[0]['values'][0][0]:.2f}" in text  # mknn asks for annotated cells


def test_svg_is_deterministic(rng, tmp_path):
    panels = make_panels(rng)
    save_heatmaps(str(tmp_path / "a.svg"), panels)
    save_heatmaps(str(tmp_path / "b.svg"), panels)
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()


def test_pdf_is_written(rng, tmp_path):
    out = tmp_path / "heat.PDF"
    save_heatmaps(str(out), make_panels(rng))
    assert out.read_bytes().startswith(b"%PDF")


def test_undefined_cells_do_not_crash(rng, tmp_path):
    panels = make_panels(rng)
    panels[0]["values"][1][2] = None
    panels[1]["values"] = [[None] * 4 for _ in range(3)]
    out = tmp_path / "heat.png"
    save_heatmaps(str(out), panels)
    assert png_size(out)[0] > 0


def test_many_long_labels(rng, tmp_path):
    names = [f"/data/runs/experiment_{i}/embeddings_layer_{i}_final_checkpoint.h5" for i in range(50)]
    panel = {"title": "mknn", "values": rng.uniform(0, 1, (50, 50)), "row_labels": names, "col_labels": names,
             "row_axis": "file of a", "col_axis": "file of b", "vmin": 0, "vmax": 1, "best": (10, 20),
             "annotate": True}
    out = tmp_path / "big.svg"
    save_heatmaps(str(out), [panel])
    text = " ".join(ET.parse(out).getroot().itertext())
    assert "experiment_49/embeddings_layer_49" in text


def test_tick_labels_stay_short_and_distinct():
    names = [f"/data/runs/experiment_{i}/embeddings_layer_{i}_final_checkpoint.h5" for i in range(3)]
    short = tick_labels(names, limit=36)
    assert all(len(s) <= 36 for s in short)
    assert len(set(short)) == 3
    assert tick_labels(["0", "1"]) == ["0", "1"]


@pytest.mark.parametrize("name", ["heat.jpg", "heat", "heat.png.txt"])
def test_unknown_suffix_is_a_usage_error(rng, tmp_path, name):
    with pytest.raises(UsageError, match=r"--plot writes \.png, \.svg or \.pdf"):
        save_heatmaps(str(tmp_path / name), make_panels(rng))


def test_missing_directory_is_a_usage_error(rng, tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "heat.png"
    with pytest.raises(UsageError, match="cannot write the plot") as info:
        save_heatmaps(str(path), make_panels(rng))
    assert "\n" not in str(info.value)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="cannot write the plot"):
        save_heatmaps(str(blocker / "heat.png"), make_panels(rng))


def test_mismatched_labels_are_rejected(rng, tmp_path):
    panels = make_panels(rng)
    panels[0]["row_labels"] = ["only one"]
    with pytest.raises(ValueError, match="row and"):
        save_heatmaps(str(tmp_path / "heat.png"), panels)
    panels = make_panels(rng)
    panels[1]["best"] = (3, 0)
    with pytest.raises(ValueError, match="outside"):
        save_heatmaps(str(tmp_path / "heat.png"), panels)
    panels = make_panels(rng)
    panels[0]["values"] = [1.0, 2.0]
    with pytest.raises(ValueError, match="2-D"):
        save_heatmaps(str(tmp_path / "heat.png"), panels)


def test_missing_matplotlib_says_how_to_install(rng, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(UsageError) as info:
        save_heatmaps(str(tmp_path / "heat.png"), make_panels(rng))
    assert "pip install 'repalign[plot]'" in str(info.value)
    assert not (tmp_path / "heat.png").exists()


def svg_text(path):
    return [t.strip() for t in ET.parse(path).getroot().itertext() if t.strip()]


def test_a_single_long_label_is_cut_in_the_middle():
    label = "".join(chr(ord("a") + i % 26) for i in range(50))
    assert tick_labels([label], limit=36) == [label[:17] + "…" + label[-18:]]


def test_labels_too_long_without_their_affixes_are_cut_in_the_middle():
    labels = [f"run/{c * 60}/end" for c in "xyz"]
    short = tick_labels(labels, limit=20)
    assert short == [f"…{c * 8}…{c * 9}…" for c in "xyz"]  # shared 'run/' and '/end' dropped, then the middle


def test_axis_labels_wrap_and_cut_long_pieces():
    text = "abcdefghijklmnopqrstuvwxyz0123456789/tail"
    assert text_in(1, 9.0) == pytest.approx(0.075)  # so 1 inch holds 13 characters
    assert wrap(text, 1.0, 9.0) == "abcdefghijklm\nnopqrstuvwxyz\n0123456789/\ntail"
    assert wrap("layer of a (a.h5)", 9.0, 9.0) == "layer of a (a.h5)"
    assert wrap("ab/" + "c" * 20, 1.0, 9.0) == "ab/\n" + "c" * 13 + "\n" + "c" * 7  # a long piece starts a line


def test_dropping_the_shared_prefix_keeps_the_endings():
    labels = [f"/data/runs/experiment_2026_11/model_{c}_embeddings.npy" for c in "ab"]
    assert tick_labels(labels) == ["…model_a_embeddings.npy", "…model_b_embeddings.npy"]


def test_one_row_panel_with_turned_column_labels(tmp_path):
    """A reference matrix has one row: it must draw, with every (long, turned) column label."""
    cols = [f"/data/model_{i}/embeddings.npy" for i in range(5)]
    panel = {"title": "mknn", "values": [[0.1, 0.2, None, 0.4, 0.5]], "row_labels": ["/data/ref.npy"],
             "col_labels": cols, "row_axis": "reference", "col_axis": "input", "vmin": 0, "vmax": 1,
             "annotate": True}
    geom = geometry(panel)
    assert geom.row_step == 1 and geom.col_rotation == 45
    out = tmp_path / "ref.svg"
    save_heatmaps(str(out), [panel])
    text = svg_text(out)
    for label in tick_labels(cols) + ["/data/ref.npy", "0.10", "0.50", "reference"]:
        assert label in text
    assert "nan" not in " ".join(text)  # the undefined cell is grey, not annotated


def test_many_rows_label_every_few_rows(tmp_path, rng):
    rows = [f"r{i}" for i in range(100)]
    panel = {"title": "cka", "values": rng.uniform(0, 1, (100, 3)), "row_labels": rows, "col_labels": ["a", "b", "c"],
             "row_axis": "layer of a", "col_axis": "layer of b", "vmin": 0, "vmax": 1}
    step = geometry(panel).row_step
    assert step > 1
    out = tmp_path / "tall.svg"
    save_heatmaps(str(out), [panel])
    text = set(svg_text(out))
    assert {rows[i] for i in range(0, 100, step)} <= text
    assert not {rows[i] for i in range(100) if i % step} & text


def test_empty_inputs_are_rejected(tmp_path, rng):
    with pytest.raises(ValueError, match="at least one panel"):
        save_heatmaps(str(tmp_path / "heat.png"), [])
    panel = dict(make_panels(rng)[0], values=np.zeros((0, 4)), row_labels=[])
    with pytest.raises(ValueError, match="the matrix is empty"):
        save_heatmaps(str(tmp_path / "heat.png"), [panel])
    assert not list(tmp_path.iterdir())


def test_unwritable_target_is_a_usage_error(tmp_path, rng):
    target = tmp_path / "taken.png"
    target.mkdir()  # a directory where the file should go
    with pytest.raises(UsageError, match="taken.png: cannot write the plot") as info:
        save_heatmaps(str(target), make_panels(rng))
    assert "\n" not in str(info.value) and target.is_dir()


# ---------------------------------------------------------------- figures fit for a paper


def _heat_and_bar(fig, panel=0):
    """The heatmap image and the colour-bar axes of panel ``panel`` (axes alternate heatmap, colour bar)."""
    axes = fig.axes
    return axes[2 * panel].images[0], axes[2 * panel + 1]


def test_colour_limits_follow_the_data_or_the_metric_range():
    from repalign.report.plot import colour_limits

    values = [[0.2, 0.5], [None, 0.3]]
    assert colour_limits(values, (0.0, 1.0), "data") == (0.2, 0.5)
    assert colour_limits(values, (0.0, 1.0), "fixed") == (0.0, 1.0)
    assert colour_limits(values, (-1.0, 1.0), "fixed") == (-1.0, 1.0)
    # A matrix's diagonal (self against self) does not stretch the data range.
    assert colour_limits([[1.0, 0.3], [0.3, 1.0]], (0.0, 1.0), "data", skip_diagonal=True) == (0.0, 1.0)
    assert colour_limits([[1.0, 0.3, 0.4], [0.3, 1.0, 0.6], [0.4, 0.6, 1.0]], (0.0, 1.0), "data",
                         skip_diagonal=True) == (0.3, 0.6)
    # Nothing or a single value to scale to: the metric's range.
    assert colour_limits([[None, None]], (0.0, 1.0), "data") == (0.0, 1.0)
    assert colour_limits([[0.4, 0.4]], (-1.0, 1.0), "data") == (-1.0, 1.0)
    with pytest.raises(UsageError):
        colour_limits(values, (0.0, 1.0), "log")


def test_figure_norm_colour_bar_label_chance_and_ticks(tmp_path):
    panel = {"title": "mknn", "values": [[0.2, 0.5], [0.4, 0.3]], "row_labels": ["layer 0", "layer 1"],
             "col_labels": ["model-x", "model-y"], "row_axis": "layer of a", "col_axis": "input",
             "vmin": 0.2, "vmax": 0.5, "colorbar_label": "mknn (higher = more aligned)", "chance": 0.25,
             "chance_range": (0.22, 0.28)}
    fig = save_heatmaps(str(tmp_path / "f.png"), [panel])
    image, cax = _heat_and_bar(fig)
    assert (image.norm.vmin, image.norm.vmax) == (0.2, 0.5)
    assert "mknn" in cax.get_ylabel() and "higher = more aligned" in cax.get_ylabel().replace("\n", " ")
    lines = [ln for ln in cax.lines if ln.get_gid() == "chance"]
    assert len(lines) == 1 and set(lines[0].get_ydata()) == {0.25}
    assert [p for p in cax.patches if p.get_gid() == "chance-band"]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["model-x", "model-y"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["layer 0", "layer 1"]


def test_chance_outside_the_colour_range_is_drawn_at_the_end_and_labelled(tmp_path):
    panel = {"title": "cka", "values": [[0.3, 0.5]], "row_labels": ["a"], "col_labels": ["b", "c"],
             "row_axis": "", "col_axis": "", "vmin": 0.3, "vmax": 0.5, "chance": 0.01}
    fig = save_heatmaps(str(tmp_path / "f.svg"), [panel])
    _, cax = _heat_and_bar(fig)
    line = next(ln for ln in cax.lines if ln.get_gid() == "chance")
    assert set(line.get_ydata()) == {0.3}
    assert any(t.startswith("chance 0.01") for t in svg_text(tmp_path / "f.svg"))


def _sweep_result(rng):
    from repalign.api import compare

    a = rng.normal(size=(60, 3, 8)).astype(np.float32)
    b = a[:, -1] + 0.5 * rng.normal(size=(60, 8)).astype(np.float32)
    return compare(a, b, metrics=["mknn", "cka-unbiased"], k=5, resamples=0, permutations=0)


def test_sweep_panels_data_and_fixed_scale_and_chance(rng, tmp_path):
    from repalign.report.plot import PlotFormat, plot_panels

    result = _sweep_result(rng)
    sw = result.sweep
    assert sw is not None
    for panel in plot_panels(result, "data"):
        vals = np.array(sw.values(panel["title"]), dtype=float)
        assert (panel["vmin"], panel["vmax"]) == (np.nanmin(vals), np.nanmax(vals))
        chances = [c.chance for row in sw.cells[panel["title"]] for c in row]
        assert panel["chance"] == pytest.approx(float(np.mean(chances)))
        assert panel["colorbar_label"] == f"{panel['title']} (higher = more aligned)"
        assert panel["row_labels"] == list(sw.layers_a) and panel["col_labels"] == list(sw.layers_b)
    fixed = {p["title"]: (p["vmin"], p["vmax"]) for p in plot_panels(result, "fixed")}
    assert fixed == {"mknn": (0.0, 1.0), "cka-unbiased": (-1.0, 1.0)}
    PlotFormat().save(result, str(tmp_path / "s.png"), scale="fixed")
    assert (tmp_path / "s.png").stat().st_size > 0


def test_cli_plot_scale_is_checked(tmp_path):
    from typer.testing import CliRunner

    from repalign.cli import app

    r = CliRunner().invoke(app, ["compare", "x.npy", "y.npy", "--plot", str(tmp_path / "p.png"),
                                 "--plot-scale", "log"])
    assert r.exit_code == 2
    assert "--plot-scale" in r.output and "Traceback" not in r.output
