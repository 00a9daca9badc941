"""Share of predictions that are a JSON value and, when a JSON schema is given, valid against it."""

import json

import jsonschema

from modelyard.evaluation import metric_base


def _valid(text: str, validator) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return validator is None or validator.is_valid(value)


def verdicts(predictions: list[str], schema: dict | None = None) -> list[bool]:
    """Each prediction's verdict; the metric is their mean (the serving log stores them per row)."""
    validator = None
    if schema is not None:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        validator = cls(schema)
    return [_valid(p, validator) for p in predictions]


class FormatValidity(metric_base.TextPairMetric):
    summary = "Share of predictions that parse as JSON and match the optional JSON schema."
    inputs_doc = (
        metric_base.TextPairMetric.inputs_doc
        + "    schema (dict, optional): JSON schema each prediction must match.\n"
    )

    def _compute(self, predictions, references, schema=None):
        hits = sum(verdicts(predictions, schema))
        return {"format_validity": hits / len(predictions) if predictions else 0.0}
