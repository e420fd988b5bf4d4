"""The report as one JSON document (the schema: repalign schema)."""

from __future__ import annotations

import json

from repalign.report.common import Result
from repalign.text import clean_tree


class JsonFormat:
    """The result's own dictionary; NaN can never appear (undefined values are null with a reason)."""

    def format(self, result: Result) -> str:
        # Names keep their exact text, but undecodable bytes of a file name become the text \\xff: valid UTF-8.
        return json.dumps(clean_tree(result.to_dict()), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def report_schema() -> dict:
    """The JSON Schema every report follows, with the metric names of the registry as it is now.

    The packaged file lists the built-in metrics; a metric registered at run time is added here.
    """
    from importlib.resources import files

    from repalign.metrics import REGISTRY

    schema = json.loads(files("repalign").joinpath("schema/report.schema.json").read_text(encoding="utf-8"))
    schema["$defs"]["metric"]["properties"]["name"]["enum"] = list(REGISTRY)
    return schema
