"""Whether each served completion passes the eval suite's format check, per request.

The verdicts are the ``format_validity`` metric's own (:func:`modelyard.evaluation.formats.
verdicts`, whose mean the metric is) against the JSON schema frozen into the current suite, so
"valid" live means what it meant at the gate. Without a suite yet, the schema in
``settings.gate`` is the one a new suite would freeze.
"""

from __future__ import annotations

from functools import partial

from modelyard.evaluation.formats import verdicts
from modelyard.evaluation.suite import current_suite
from modelyard.serving.requestlog import FormatCheck
from modelyard.settings import Settings

METRIC = "format_validity"


def suite_schema(settings: Settings) -> dict | None:
    """The JSON schema the current suite checks formats against (else the settings' one)."""
    suite = current_suite(settings)
    if suite is None:
        return settings.gate.json_schema
    return suite.config.get("metric_args", {}).get(METRIC, {}).get("schema")


def format_check(settings: Settings) -> FormatCheck:
    """A batch check: completions -> one verdict each."""
    return partial(verdicts, schema=suite_schema(settings))
