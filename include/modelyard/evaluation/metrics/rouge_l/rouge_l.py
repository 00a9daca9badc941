"""ROUGE-L F-measure (longest common subsequence), averaged over records, via ``rouge-score``.

Shipped in the repo because ``evaluate.load("rouge")`` would fetch the module from the hub.
"""

from rouge_score import rouge_scorer

from modelyard.evaluation import metric_base


class RougeL(metric_base.TextPairMetric):
    summary = "Mean ROUGE-L F-measure between predictions and references (stemmed)."

    def _compute(self, predictions, references):
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        pairs = zip(predictions, references, strict=True)
        scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in pairs]
        return {"rouge_l": sum(scores) / len(scores) if scores else 0.0}
