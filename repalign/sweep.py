"""Layer sweeps and many-input matrices: neighbour lists and CKA statistics once per layer, reused by every pair."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np

from repalign import nulls as _nulls
from repalign import preprocess as _pre
from repalign import stats as _stats
from repalign.errors import InputError
from repalign.io import LayerSet
from repalign.metrics import COVERS, REGISTRY, PairData, list_depth
from repalign.metrics import cka as _cka
from repalign.metrics.linalg import dot, matmul
from repalign.results import MetricResult, Sweep, UncertaintySettings
from repalign.seeds import Streams
from repalign.validation import as_embedding, check_k


class ArrayLayers:
    """An in-memory (n, d) or (n, L, d) array with the interface of :class:`~repalign.io.LayerSet`."""

    def __init__(self, array: np.ndarray, name: str):
        self.array = np.asanyarray(array)
        self.name = name
        self.layered = self.array.ndim == 3
        count = self.array.shape[1] if self.layered else 1
        self.labels = tuple(str(i) for i in range(count)) if self.layered else (name,)
        self.indices = tuple(range(count)) if self.layered else (None,)
        self.shape = tuple(self.array.shape)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def where(self) -> str:
        return self.name

    def layer_name(self, i: int) -> str:
        return f"{self.name} layer {self.indices[i]}" if self.layered else self.name

    def read(self, i: int) -> np.ndarray:
        return self.array[:, self.indices[i], :] if self.layered else self.array

    def select(self, spec: str | None) -> ArrayLayers:
        from repalign.io import parse_layers

        if spec is None:
            return self
        if not self.layered:
            raise InputError(f"{self.name}: a single 2-D array has no layers to select (--layer {spec})")
        out = ArrayLayers.__new__(ArrayLayers)
        pick = parse_layers(spec, len(self), self.name)
        out.array, out.name, out.layered, out.shape = self.array, self.name, True, self.shape
        out.labels = tuple(self.labels[i] for i in pick)
        out.indices = tuple(self.indices[i] for i in pick)
        return out


class Checked:
    """A single-array source whose array has been read and validated already."""

    def __init__(self, source, array: np.ndarray):
        self.source, self.array = source, array
        self.labels, self.layered, self.where = source.labels, False, source.where

    def __len__(self) -> int:
        return 1

    def layer_name(self, i: int) -> str:
        return self.source.layer_name(i)

    def read(self, i: int) -> np.ndarray:
        return self.array


class Representation:
    """One input's selected layers, paired and preprocessed, with per-layer work computed once.

    Layers are read one at a time; they stay in memory only when ``keep`` is
    True (the caller decides from the memory there is), so a sweep over a
    file larger than memory holds one layer pair plus the neighbour lists.
    """

    def __init__(self, source: LayerSet | ArrayLayers, label: str, rows: np.ndarray | None,
                 pre: _pre.Preprocessing, keep: bool = True):
        self.source = source
        self.label = label
        self.rows = rows
        self.pre = pre
        self.keep = keep
        self.labels = tuple(source.labels)
        self.notes: list[str] = []
        self._layers: dict = {}
        self._lists: dict = {}
        self._counts: dict = {}
        self._cka: dict = {}
        self._shape: tuple | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def layered(self) -> bool:
        return bool(self.source.layered)

    def name(self, i: int) -> str:
        return self.source.layer_name(i)

    def layer(self, i: int) -> np.ndarray:
        """Layer i, validated, with the paired rows and preprocessed."""
        if i in self._layers:
            return self._layers[i]
        name = self.name(i)
        if isinstance(self.source, Checked):  # validated when it was opened
            array, notes = self.source.read(i), []
        else:
            array, notes = as_embedding(self.source.read(i), name)
        for note in notes:
            # One note per input, not one per layer.
            note = note.replace(name, self.source.where, 1) if len(self) > 1 else note
            if note not in self.notes:
                self.notes.append(note)
        if self._shape is None:
            self._shape = (array.shape, name)
        elif array.shape != self._shape[0]:
            shape, first = self._shape
            raise InputError(f"{self.source.where}: layers differ in shape: {first} is "
                             f"{'×'.join(map(str, shape))} but {name} is {'×'.join(map(str, array.shape))}")
        if self.rows is not None:
            array = array[self.rows]
        array = _pre.apply(array, self.pre, name)
        if self.keep:
            self._layers[i] = array
        return array

    def lists(self, i: int, depth: int, distance: str, k: int) -> np.ndarray:
        """Neighbour lists of layer i; ordered exactly when deeper than k (resamples read the order)."""
        from repalign.neighbors import knn

        if i not in self._lists:
            self._lists[i] = knn(self.layer(i), depth, distance, label=self.name(i), ordered=depth > k)
        return self._lists[i]

    def counts(self, i: int, k: int, depth: int, distance: str) -> dict:
        if i not in self._counts:
            self._counts[i] = _nulls.graph_counts(self.lists(i, depth, distance, k)[:, :k])
        return self._counts[i]

    def cka(self, i: int, with_sxx: bool = True) -> _cka.LayerStats:
        """Layer i's CKA statistics; ``with_sxx`` False when the Gram route will supply ‖XcᵀXc‖²_F."""
        st = self._cka.get(i)
        if st is None or (with_sxx and np.isnan(st.sxx)):
            st = self._cka[i] = _cka.layer_stats(self.layer(i), keep_gram=False, with_sxx=with_sxx)
        return st


def _cross(ra: Representation, i: int, rb: Representation, j: int, xc=None) -> _cka.CrossStats:
    """The CKA sums of one layer pair from the per-layer statistics and one cross-product.

    ``xc``: layer i of a, already centred in float64 (computed once for all the pairs it is in).
    """
    x = ra.layer(i)
    y = rb.layer(j)
    n = x.shape[0]
    if x.shape[1] > n and y.shape[1] > n:  # the Gram route of cross_stats; n is small then
        return _cka.cross_stats(x, y)
    sa, sb = ra.cka(i), rb.cka(j)
    if sa.constant or sb.constant:
        sxy = 0.0
    else:
        g = _cka.cross_product(x, sa.mean, y, sb.mean) if xc is None else _cka.cross_product(xc, None, y, sb.mean)
        sxy = dot(g, g)
    return _cka.CrossStats(n, sxy, sa.sxx, sb.sxx, sa.a, sb.a)


# Default permutations behind a best-over-layers p-value: each costs La·n·k table lookups (about 20 ms for
# 13×13 layers at n = 5000), so 1000 would cost more than the sweep's searches; 200 resolve p down to 0.005.
SWEEP_PERMUTATIONS = 200

# Rows per block of the blocked Gram products (two blocks of every layer are in memory at once).
_GRAM_BLOCK = 1024


def _gram_route_pays(ra: Representation, rb: Representation, n: int) -> bool:
    """Whether all-pairs CKA numerators are cheaper through n×n Grams than through La·Lb cross-products.

    Cross-products cost La·Lb·2n·d1·d2 flops; the Grams n²·(La·d1 + Lb·d2) (half of each, by symmetry),
    after which every pair is one inner product. The Gram route needs every layer in memory.
    """
    La, Lb = len(ra), len(rb)
    if La * Lb == 1 or not (ra.keep and rb.keep):
        return False
    d1, d2 = ra.layer(0).shape[1], rb.layer(0).shape[1]
    if d1 > n and d2 > n:
        return False  # cross_stats takes its own Gram route then
    return n * n * (La * d1 + Lb * d2) < 0.8 * La * Lb * 2 * n * d1 * d2


def _gram_numerators(ra: Representation, rb: Representation, progress) -> tuple:
    """⟨Kc_i, Lc_j⟩ = ‖XcᵢᵀYcⱼ‖²_F for every layer pair (La×Lb), and ⟨Kc_i, Kc_i⟩ (La), ⟨Lc_j, Lc_j⟩ (Lb),
    from blocked centred Grams.

    The Grams are symmetric, so only blocks (r, c) with r ≤ c are formed, off-diagonal ones counted
    twice; a block of every layer's Gram is stacked so that all pairs' inner products are one GEMM.
    Exact in float64 like the cross-product route (the sums run in another order).
    """
    La, Lb = len(ra), len(rb)
    n = ra.layer(0).shape[0]
    means = ([ra.cka(i, with_sxx=False).mean for i in range(La)], [rb.cka(j, with_sxx=False).mean for j in range(Lb)])
    out = np.zeros((La, Lb))
    self_a, self_b = np.zeros(La), np.zeros(Lb)
    buffers: dict = {}
    starts = list(range(0, n, _GRAM_BLOCK))

    def block(r: Representation, mean, i: int, rows: slice) -> np.ndarray:
        return np.asarray(r.layer(i)[rows], dtype=np.float64) - mean

    done, total = 0, len(starts) * (len(starts) + 1) // 2
    for bi, r0 in enumerate(starts):
        rs = slice(r0, r0 + _GRAM_BLOCK)
        left = ([block(ra, means[0][i], i, rs) for i in range(La)], [block(rb, means[1][j], j, rs) for j in range(Lb)])
        for c0 in starts[bi:]:
            done += 1
            progress(f"CKA Gram blocks {done}/{total}")
            cs = slice(c0, c0 + _GRAM_BLOCK)
            right = left if c0 == r0 else ([block(ra, means[0][i], i, cs) for i in range(La)],
                                           [block(rb, means[1][j], j, cs) for j in range(Lb)])
            shape = (left[0][0].shape[0], right[0][0].shape[0])
            if shape not in buffers:  # at most three shapes (full and last blocks); reused, not reallocated
                buffers[shape] = (np.empty((La,) + shape), np.empty((Lb,) + shape))
            ga, gb = buffers[shape]
            for g, lhs, rhs in ((ga, left[0], right[0]), (gb, left[1], right[1])):
                for i, (x, y) in enumerate(zip(lhs, rhs)):
                    g[i] = matmul(x, y.T)
            w = 1.0 if c0 == r0 else 2.0
            fa, fb = ga.reshape(La, -1), gb.reshape(Lb, -1)
            out += w * matmul(fa, fb.T)
            self_a += w * np.einsum("ij,ij->i", fa, fa)
            self_b += w * np.einsum("ij,ij->i", fb, fb)
    return out, self_a, self_b


def _best(cells: list[list[MetricResult]]) -> tuple[int, int] | None:
    """Row-major first argmax of the defined values."""
    best, where = None, None
    for i, row in enumerate(cells):
        for j, m in enumerate(row):
            if m.value is not None and (best is None or m.value > best):
                best, where = m.value, (i, j)
    return where


def run(ra: Representation, rb: Representation, names: list[str], *, k: int, distance: str,
        u: UncertaintySettings, progress: Callable[[str], None] | None = None, timing: dict | None = None
        ) -> tuple[tuple[MetricResult, ...], Sweep | None]:
    """Score every (layer of a, layer of b) pair; full uncertainty for each metric's best pair.

    Returns the best pair's result per metric and, when either side has
    several layers, the whole matrix. With one layer on each side this is
    exactly ``compare`` of the two arrays.
    """
    progress = progress or (lambda stage: None)
    timing = {} if timing is None else timing
    t = time.perf_counter()
    La, Lb = len(ra), len(rb)
    n = ra.layer(0).shape[0]
    rb.layer(0)
    timing["load_seconds"] = time.perf_counter() - t
    knn_metrics = [m for m in names if REGISTRY[m].needs_neighbors]
    cka_metrics = [m for m in names if not REGISTRY[m].needs_neighbors]
    if knn_metrics:
        check_k(k, n, knn_metrics[0], (ra.source.where, rb.source.where))
    depth = list_depth(n, k, u.resamples)

    # One pass per layer: its neighbour lists and its own CKA statistics.
    t = time.perf_counter()
    gram = bool(cka_metrics) and _gram_route_pays(ra, rb, n)
    for r, side in ((ra, "a"), (rb, "b")):
        for i in range(len(r)):
            if knn_metrics:
                progress(f"{side}: layer {i + 1}/{len(r)}: {depth} nearest neighbours of {n} items")
                r.counts(i, k, depth, distance)
            if cka_metrics and La * Lb > 1:  # a single pair computes its CKA sums in one pass (cross_stats)
                r.cka(i, with_sxx=not gram)

    pairs = La * Lb
    shared: dict = {}
    if pairs == 1:  # a plain comparison: no matrix, the full result is the only cell
        results = []
        for m in names:
            t = time.perf_counter()
            results.append(_full(m, ra, rb, (0, 0), k=k, distance=distance, u=u, depth=depth, pairs=1,
                                 progress=progress, shared=shared, neighbors=bool(knn_metrics)))
            timing[f"{m}_seconds"] = time.perf_counter() - t
        return tuple(results), None
    timing["layers_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    quiet = UncertaintySettings(resamples=0, permutations=0, seed=u.seed)
    cells = {m: [[None] * Lb for _ in range(La)] for m in names}
    grams = _gram_numerators(ra, rb, progress) if gram else None
    for i in range(La):
        xc = _cka.centred(ra.layer(i), ra.cka(i).mean) if cka_metrics and grams is None else None
        for j in range(Lb):
            progress(f"scoring layer pair {i * Lb + j + 1}/{pairs}")
            lists = {"a": ra.lists(i, depth, distance, k),
                     "b": rb.lists(j, depth, distance, k)} if knn_metrics else {}
            counts = (ra.counts(i, k, depth, distance), rb.counts(j, k, depth, distance)) if knn_metrics else None
            if not cka_metrics:
                cross = None
            elif grams is not None:
                sa, sb = ra.cka(i, with_sxx=False), rb.cka(j, with_sxx=False)
                sxy = 0.0 if sa.constant or sb.constant else float(grams[0][i, j])
                sxx = 0.0 if sa.constant else float(grams[1][i])
                syy = 0.0 if sb.constant else float(grams[2][j])
                cross = _cka.CrossStats(n, sxy, sxx, syy, sa.a, sb.a)
            else:
                cross = _cross(ra, i, rb, j, xc=xc)
            pd = PairData(None, None, k=k, distance=distance, labels=(ra.name(i), rb.name(j)), uncertainty=quiet,
                          lists=lists, cross=cross, counts=counts, n=n)
            for m in names:
                cells[m][i][j] = REGISTRY[m].compute(pd)

    timing["pairs_seconds"] = time.perf_counter() - t
    best_results = []
    best_at = {}
    for m in names:
        t = time.perf_counter()
        at = _best(cells[m])
        best_at[m] = at
        if at is None:  # undefined everywhere: report the first pair's reason
            best_results.append(cells[m][0][0])
            continue
        defined = {(i, j) for i, row in enumerate(cells[m]) for j, c in enumerate(row) if c.value is not None}
        best_results.append(_full(m, ra, rb, at, k=k, distance=distance, u=u, depth=depth,
                                  pairs=pairs, progress=progress, shared=shared, neighbors=bool(knn_metrics),
                                  defined=defined))
        timing[f"{m}_seconds"] = time.perf_counter() - t
    sweep = None
    if ra.layered or rb.layered:
        sweep = Sweep(ra.labels, rb.labels, {m: tuple(tuple(row) for row in cells[m]) for m in names}, best_at)
    return tuple(best_results), sweep


def _full(m: str, ra: Representation, rb: Representation, at: tuple[int, int], *, k: int, distance: str,
          u: UncertaintySettings, depth: int, pairs: int, progress, shared: dict, neighbors: bool,
          defined: set | None = None) -> MetricResult:
    """The best pair of one metric with its interval and its max-corrected p-value.

    ``shared`` keeps one PairData per layer pair, so metrics whose best pair is the same share its work
    (both CKA estimators come from one pass of cross-products); ``neighbors``: some metric uses k-NN lists;
    ``defined``: the layer pairs where this metric has a value (None: all), the pairs its max is taken over.
    """
    i, j = at
    pd = shared.get(at)
    if pd is None:
        # Bonferroni over all pairs: if every pair's interval covers at once (probability ≥ the level), the
        # chosen pair's does too, whichever pair the data made best.
        level = 1.0 - (1.0 - u.confidence) / pairs
        ub = dataclasses.replace(u, confidence=level, permutations=0, permutations_explicit=False)
        lists = {"a": ra.lists(i, depth, distance, k), "b": rb.lists(j, depth, distance, k)} if neighbors else {}
        counts = (ra.counts(i, k, depth, distance), rb.counts(j, k, depth, distance)) if neighbors else None
        pd = shared[at] = PairData(ra.layer(i), rb.layer(j), k=k, distance=distance, labels=(ra.name(i), rb.name(j)),
                                   uncertainty=ub, progress=progress, lists=lists, counts=counts)
    res = REGISTRY[m].compute(pd)
    ra.notes.extend(note for note in pd.notes if note not in ra.notes)
    changes: dict = {}
    wants_perm = u.permutations > 0 and (REGISTRY[m].needs_neighbors or u.permutations_explicit)
    count = u.permutations if u.permutations_explicit or pairs == 1 else min(u.permutations, SWEEP_PERMUTATIONS)
    if wants_perm and res.value is not None:
        perm_seed = Streams.from_seed(u.seed).perm  # the stream compare uses
        perms = list(_stats.permutations(perm_seed, ra.layer(0).shape[0], count))
        progress(f"{m}: {count} permutations over {pairs} layer pair{'s' if pairs > 1 else ''}")
        if REGISTRY[m].needs_neighbors:
            null = _stats.knn_max_permutation_null(
                [ra.lists(a, depth, distance, k)[:, :k] for a in range(len(ra))],
                [rb.lists(b, depth, distance, k)[:, :k] for b in range(len(rb))], perms)
        else:
            null = _cka_max_null(m, ra, rb, perms, defined)
        changes.update(p_value=_stats.p_value(res.value, null), calibrated=_stats.calibrated_score(res.value, null),
                       permutations=count)
    if ra.layered or rb.layered:
        params = dict(res.params)
        if ra.layered:
            params["layer_a"] = ra.labels[i]
        if rb.layered:
            params["layer_b"] = rb.labels[j]
        changes["params"] = params
    if pairs > 1 and res.ci_low is not None:
        changes["ci_method"] = f"{res.ci_method}, Bonferroni over {pairs} layer pairs"
        changes["ci_covers"] = (f"{COVERS[m]}, at the chosen layer pair; simultaneous over all {pairs} pairs, "
                                "so it stays valid for the pair chosen as best")
    return dataclasses.replace(res, **changes)


def _cka_max_null(m: str, ra: Representation, rb: Representation, perms, defined: set | None) -> np.ndarray:
    """Max over the layer pairs where CKA is defined of CKA with B's rows permuted, one permutation for all.

    Pairs without a value (a layer without variance) are left out, as they are of the observed max.
    """
    out = None
    for i in range(len(ra)):
        for j in range(len(rb)):
            if defined is not None and (i, j) not in defined:
                continue
            x, y = ra.layer(i), rb.layer(j)
            st = _cka.cross_stats(x, y)
            null = _stats.cka_permutation_null(x, y, st, perms, unbiased=m == "cka-unbiased")
            out = null if out is None else np.maximum(out, null)
    return out


def self_scores(r: Representation, names: list[str], *, k: int, distance: str,
                u: UncertaintySettings) -> tuple[MetricResult, ...]:
    """An input against itself (a matrix diagonal): its first layer with itself, from the cached work."""
    n = r.layer(0).shape[0]
    depth = list_depth(n, k, u.resamples)
    knn = any(REGISTRY[m].needs_neighbors for m in names)
    cka = any(not REGISTRY[m].needs_neighbors for m in names)
    lists = counts = cross = None
    if knn:
        check_k(k, n, "mknn", (r.source.where, r.source.where))
        lists = {"a": r.lists(0, depth, distance, k), "b": r.lists(0, depth, distance, k)}
        counts = (r.counts(0, k, depth, distance),) * 2
    if cka:
        st = r.cka(0)
        cross = _cka.CrossStats(n, st.sxx, st.sxx, st.sxx, st.a, st.a)
    quiet = UncertaintySettings(resamples=0, permutations=0, seed=u.seed)
    pd = PairData(None, None, k=k, distance=distance, labels=(r.name(0), r.name(0)), uncertainty=quiet,
                  lists=lists, cross=cross, counts=counts, n=n)
    return tuple(dataclasses.replace(REGISTRY[m].compute(pd), ci_reason="an input compared with itself")
                 for m in names)
