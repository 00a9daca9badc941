"""ROUGE-L F-measure (longest common subsequence), averaged over records, via ``rouge-score``.

Shipped in the repo because ``evaluate.load("rouge")`` would fetch the module from the hub.
"""

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = "Mean ROUGE-L F-measure between predictions and references (rouge-score, stemmed)."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated completions.
    references (list of str): expected completions.
Returns:
    rouge_l (float): in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RougeL(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
        return {"rouge_l": sum(scores) / len(scores) if scores else 0.0}
