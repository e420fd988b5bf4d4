"""repalign: do two embedding spaces organise the same items the same way?"""

__version__ = "0.1.0"

from repalign.api import compare, matrix  # noqa: E402
from repalign.errors import InputError, RepalignError, UsageError  # noqa: E402
from repalign.io import inspect  # noqa: E402
from repalign.results import ComparisonResult, InputInfo, MatrixResult, MetricResult  # noqa: E402

__all__ = ["compare", "matrix", "inspect", "ComparisonResult", "MatrixResult", "InputInfo", "MetricResult",
           "RepalignError",
           "InputError", "UsageError", "__version__"]
