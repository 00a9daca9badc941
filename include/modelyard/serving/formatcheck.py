"""Whether each served completion passes the eval suite's format check, per request.

The verdict is the suite's own ``format_validity`` metric module (its :func:`verdicts`) with the
JSON schema frozen into the current suite, so "valid" live means what it meant at the gate.
Without a suite yet, the schema in ``settings.gate`` is the one a new suite would freeze.
"""

from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path
from types import ModuleType

from modelyard.serving.requestlog import FormatCheck
from modelyard.settings import Settings

METRIC = "format_validity"


def _metric_module() -> ModuleType:
    from modelyard.evaluation.suite import metric_module_path

    path = Path(metric_module_path(METRIC)) / f"{METRIC}.py"
    spec = importlib.util.spec_from_file_location(f"modelyard_metric_{METRIC}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def suite_schema(settings: Settings) -> dict | None:
    """The JSON schema the current suite checks formats against (else the settings' one)."""
    from modelyard.evaluation.suite import current_suite

    suite = current_suite(settings)
    if suite is None:
        return settings.gate.json_schema
    return suite.config.get("metric_args", {}).get(METRIC, {}).get("schema")


def format_check(settings: Settings) -> FormatCheck:
    """A batch check: completions -> one verdict each."""
    return partial(_metric_module().verdicts, schema=suite_schema(settings))
