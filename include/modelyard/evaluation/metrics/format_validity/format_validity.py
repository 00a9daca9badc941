"""Share of predictions that are a JSON value and, when a JSON schema is given, valid against it."""

from modelyard.evaluation import metric_base
from modelyard.evaluation.formats import verdicts


class FormatValidity(metric_base.TextPairMetric):
    summary = "Share of predictions that parse as JSON and match the optional JSON schema."
    inputs_doc = (
        metric_base.TextPairMetric.inputs_doc
        + "    schema (dict, optional): JSON schema each prediction must match.\n"
    )

    def _compute(self, predictions, references, schema=None):
        hits = sum(verdicts(predictions, schema))
        return {"format_validity": hits / len(predictions) if predictions else 0.0}
