"""Files are read-only, never unpickled, and HDF5 files cannot make repalign read other files unasked."""

import h5py
import numpy as np
import pytest
from test_cli import expect_input_error, run


@pytest.fixture
def linked(tmp_path, rng):
    target = tmp_path / "target.h5"
    with h5py.File(target, "w") as f:
        f["data"] = rng.standard_normal((30, 4))
    p = tmp_path / "links.h5"
    with h5py.File(p, "w") as f:
        f["ext"] = h5py.ExternalLink(str(target), "/data")
        f["extgroup"] = h5py.ExternalLink(str(target), "/")
        layout = h5py.VirtualLayout(shape=(30, 4), dtype="f8")
        layout[:] = h5py.VirtualSource(str(target), "data", shape=(30, 4))
        f.create_virtual_dataset("virtual", layout)
        f.create_dataset("raw", shape=(30, 4), dtype="f8", external=[(str(tmp_path / "raw.bin"), 0, 30 * 4 * 8)])
    (tmp_path / "raw.bin").write_bytes(rng.standard_normal((30, 4)).tobytes())
    other = tmp_path / "other.npy"
    np.save(other, rng.standard_normal((30, 4)))
    return str(p), str(other)


@pytest.mark.parametrize("key,needle", [("ext", "external link to"), ("virtual", "virtual dataset reading"),
                                        ("raw", "external raw files")])
def test_external_data_refused_then_allowed(linked, key, needle):
    p, other = linked
    msg = expect_input_error(["compare", f"{p}:{key}", other, "--resamples", "0"], f"{p}:{key}", needle,
                             "--allow-external")
    assert "target.h5" in msg or key == "raw"
    ok = run("compare", f"{p}:{key}", other, "--resamples", "0", "--allow-external", "-f", "json")
    assert ok.exit_code == 0, ok.stderr


def test_inspect_lists_links_without_following(linked):
    p, _ = linked
    r = run("inspect", p, "-f", "json")
    arrays = {a["key"]: a for a in __import__("json").loads(r.stdout)["arrays"]}
    assert arrays["ext"]["dtype"].startswith("external link to") and not arrays["ext"]["embedding"]
    assert "extgroup" in arrays and "extgroup/data" not in arrays
