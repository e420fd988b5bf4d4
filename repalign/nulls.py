"""Former home of the exact permutation nulls, now repalign.stats.nulls (kept for existing importers)."""

from repalign.stats.nulls import (
    CkaSums,
    biased_cka_null,
    graph_counts,
    mknn_null,
    mknn_null_from_counts,
    mknn_z,
    unbiased_cka_null,
    z_score,
)

__all__ = ["CkaSums", "biased_cka_null", "graph_counts", "mknn_null", "mknn_null_from_counts", "mknn_z",
           "unbiased_cka_null", "z_score"]
