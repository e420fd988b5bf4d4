"""One input's selected layers, paired and preprocessed, with the per-layer work done once; CKA numerators."""

from __future__ import annotations

from typing import Callable, cast

import numpy as np

from repalign import preprocess as _pre
from repalign.engine.cache import ListCache, ListKey
from repalign.engine.inputs import Streaming
from repalign.engine.streamed import StreamedLayer
from repalign.errors import InputError
from repalign.io import Checked, LayerSource
from repalign.metrics import cka as _cka
from repalign.metrics.linalg import dot, matmul
from repalign.search import ExactSearch, Search, exact_for
from repalign.stats import nulls as _nulls
from repalign.validation import as_embedding


class Representation:
    """One input's selected layers, paired and preprocessed, with per-layer work computed once.

    Layers are read one at a time; they stay in memory only when ``keep`` is
    True (the caller decides from the memory there is), so a sweep over a
    file larger than memory holds one layer pair plus the neighbour lists.
    """

    def __init__(self, source: LayerSource, label: str, rows: np.ndarray | None,
                 pre: _pre.Preprocessing, keep: bool = True, cache: ListCache | None = None,
                 name: str | None = None, search: Search | None = None):
        self.source = source
        self.label = label
        self.rows = rows
        self.pre = pre
        self.keep = keep
        self.cache = cache
        self.shown_name = label if name is None else name  # how the cache's notes name this input
        self.search: Search = ExactSearch() if search is None else search
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
        """Layer i, validated, with the paired rows and preprocessed.

        A streamed input's layer is a :class:`~repalign.engine.streamed.StreamedLayer`: the blocked kernels
        read it a block of rows at a time, like an array (typed as one, which is how the metrics use it).
        """
        if i in self._layers:
            return self._layers[i]
        name = self.name(i)
        if isinstance(self.source, Streaming):
            return self._streamed(i, name)
        if isinstance(self.source, Checked):  # validated when it was opened
            array, notes = self.source.read(i), list[str]()
        else:
            array, notes = as_embedding(self.source.read(i), name)
        self._note(notes, name)
        self._check_shape(array.shape, name)
        if self.rows is not None:
            array = array[self.rows]
        array = _pre.apply(array, self.pre, name)
        if self.keep:
            self._layers[i] = array
        return array

    def _streamed(self, i: int, name: str) -> np.ndarray:
        """Layer i of a streamed input, validated and planned by whole passes (nothing of it kept but row norms)."""
        assert isinstance(self.source, Streaming)
        raw = self.source.rows(i)
        if raw is None:
            raise InputError(f"{name}: cannot be read in row blocks")
        self._check_shape(raw.shape, name)
        layer = StreamedLayer(raw, self.rows, self.pre, name, self.source.budget, self.source.spare)
        self._note(layer.notes, name)
        self._layers[i] = layer  # holds no rows, only what each block needs (e.g. row norms)
        return cast(np.ndarray, layer)

    def _note(self, notes: list[str], name: str) -> None:
        for note in notes:
            # One note per input, not one per layer.
            note = note.replace(name, self.source.where, 1) if len(self) > 1 else note
            if note not in self.notes:
                self.notes.append(note)

    def _check_shape(self, shape: tuple[int, ...], name: str) -> None:
        if self._shape is None:
            self._shape = (tuple(shape), name)
        elif tuple(shape) != self._shape[0]:
            first_shape, first = self._shape
            raise InputError(f"{self.source.where}: layers differ in shape: {first} is "
                             f"{'×'.join(map(str, first_shape))} but {name} is {'×'.join(map(str, shape))}")

    @property
    def streamed(self) -> bool:
        """Whether this input is read from its file in row blocks."""
        return isinstance(self.source, Streaming)

    def lists(self, i: int, depth: int, distance: str, k: int, ordered: bool = False) -> np.ndarray:
        """Neighbour lists of layer i; in exact order when deeper than k (resamples read the order) or when
        ``ordered`` (a metric reads the order); otherwise only each row's set of k is certified."""
        ordered = ordered or depth > k
        cached = self._lists.get(i)
        if cached is None or (ordered and not cached[1]):
            cached = self._lists[i] = (self._search(i, ListKey(depth, k, distance, ordered)), ordered)
        return cached[0]

    def _search(self, i: int, key: ListKey) -> np.ndarray:
        """Layer i's lists from the cache directory when one is given and the search is exact, else searched.

        Approximate lists are not cached: their recall is measured while they are searched, in the same run.
        """
        x = self.layer(i)

        def run() -> np.ndarray:
            return self.search.lists(x, key.depth, key.distance, key.ordered, self.name(i))

        if self.cache is None or not exact_for(self.search, x.shape) or self.streamed:
            return run()  # a streamed layer is not hashed (the cache's key reads the whole layer)
        return self.cache.lists(x, self.shown_name, key, run)

    def counts(self, i: int, k: int, depth: int, distance: str, ordered: bool = False) -> dict:
        if i not in self._counts:
            self._counts[i] = _nulls.graph_counts(self.lists(i, depth, distance, k, ordered)[:, :k])
        return self._counts[i]

    def cka(self, i: int, with_sxx: bool = True) -> _cka.LayerStats:
        """Layer i's CKA statistics; ``with_sxx`` False when the Gram route will supply ‖XcᵀXc‖²_F."""
        st = self._cka.get(i)
        if st is None or (with_sxx and np.isnan(st.sxx)):
            st = self._cka[i] = _cka.layer_stats(self.layer(i), keep_gram=False, with_sxx=with_sxx)
        return st


def cross(ra: Representation, i: int, rb: Representation, j: int, xc=None) -> _cka.CrossStats:
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


# Rows per block of the blocked Gram products (two blocks of every layer are in memory at once).
_GRAM_BLOCK = 1024


def gram_route_pays(ra: Representation, rb: Representation, n: int) -> bool:
    """Whether all-pairs CKA numerators are cheaper through n×n Grams than through La·Lb cross-products.

    Cross-products cost La·Lb·2n·d1·d2 flops; the Grams n²·(La·d1 + Lb·d2) (half of each, by symmetry),
    after which every pair is one inner product. The Gram route needs every layer in memory (or streamed: its
    blocks are then read from the files, block pair by block pair).
    """
    La, Lb = len(ra), len(rb)
    if La * Lb == 1 or not ((ra.keep or ra.streamed) and (rb.keep or rb.streamed)):
        return False
    d1, d2 = ra.layer(0).shape[1], rb.layer(0).shape[1]
    if d1 > n and d2 > n:
        return False  # cross_stats takes its own Gram route then
    return n * n * (La * d1 + Lb * d2) < 0.8 * La * Lb * 2 * n * d1 * d2


def gram_numerators(ra: Representation, rb: Representation, progress: Callable[[str], None]) -> tuple:
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
