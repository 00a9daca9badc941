"""Corpus BLEU via ``sacrebleu``, scaled to [0, 1] so every shipped metric shares one range."""

import sacrebleu

from modelyard.evaluation import metric_base


class Bleu(metric_base.TextPairMetric):
    summary = "Corpus BLEU (sacrebleu defaults, one reference per prediction), divided by 100."

    def _compute(self, predictions, references):
        return {"bleu": sacrebleu.corpus_bleu(list(predictions), [list(references)]).score / 100}
