"""repalign: do two embedding spaces organise the same items the same way?"""

__version__ = "0.1.0"

from repalign.api import compare  # noqa: E402
from repalign.errors import InputError, RepalignError, UsageError  # noqa: E402
from repalign.io import inspect  # noqa: E402
from repalign.results import ComparisonResult, InputInfo, MetricResult  # noqa: E402

__all__ = ["compare", "inspect", "ComparisonResult", "InputInfo", "MetricResult", "RepalignError",
           "InputError", "UsageError", "__version__"]
