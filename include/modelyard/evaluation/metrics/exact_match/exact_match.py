"""Exact match after trimming surrounding whitespace: the strictest bar for extraction tasks."""

import datasets
import evaluate

_DESCRIPTION = "Fraction of predictions equal to their reference once surrounding whitespace is trimmed."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated completions.
    references (list of str): expected completions.
Returns:
    exact_match (float): in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        hits = sum(p.strip() == r.strip() for p, r in zip(predictions, references))
        return {"exact_match": hits / len(predictions) if predictions else 0.0}
