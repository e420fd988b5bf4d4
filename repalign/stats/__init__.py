"""Generic statistics the metrics call: resampling, intervals, exact nulls, permutations and p-values."""

from repalign.stats.graphs import overlaps
from repalign.stats.group_jackknife import GROUPS, group_jackknife_se, group_jackknife_values, groups
from repalign.stats.intervals import interval, jackknife_se
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
from repalign.stats.permutation import (
    CkaPermuter,
    calibrated_from_threshold,
    calibrated_score,
    cka_permutation_null,
    knn_max_permutation_null,
    knn_permutation_null,
    p_value,
    permutations,
)
from repalign.stats.pvalues import (
    METHOD_BOUND,
    METHOD_PERMUTATION,
    METHOD_SEQUENTIAL,
    STOP_AFTER,
    SequentialNull,
    cantelli_bound,
    cantelli_quantile,
    sequential_p_value,
)
from repalign.stats.resampling import (
    IJ_NULL_PERMUTATIONS,
    FullList,
    IjVariance,
    KnnResampler,
    calibration_replicates,
    ij_budgets,
    knn_ij_variance,
    resample_weights,
)

__all__ = [
    "IJ_NULL_PERMUTATIONS", "METHOD_BOUND", "METHOD_PERMUTATION", "METHOD_SEQUENTIAL", "STOP_AFTER",
    "CkaPermuter", "SequentialNull", "calibrated_from_threshold", "cantelli_bound", "cantelli_quantile",
    "sequential_p_value", "CkaSums", "FullList", "IjVariance", "KnnResampler", "biased_cka_null",
    "calibrated_score", "calibration_replicates", "cka_permutation_null", "graph_counts", "ij_budgets",
    "interval", "jackknife_se", "knn_ij_variance",
    "GROUPS", "group_jackknife_se", "group_jackknife_values", "groups",
    "knn_max_permutation_null", "knn_permutation_null", "mknn_null", "mknn_null_from_counts", "mknn_z",
    "overlaps", "p_value", "permutations", "resample_weights", "unbiased_cka_null", "z_score",
]
