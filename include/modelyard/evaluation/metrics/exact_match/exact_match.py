"""Exact match after trimming surrounding whitespace: the strictest bar for extraction tasks."""

from modelyard.evaluation import metric_base


class ExactMatch(metric_base.TextPairMetric):
    summary = "Share of predictions equal to their reference, surrounding whitespace trimmed."

    def _compute(self, predictions, references):
        hits = sum(p.strip() == r.strip() for p, r in zip(predictions, references, strict=True))
        return {"exact_match": hits / len(predictions) if predictions else 0.0}
