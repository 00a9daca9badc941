"""Corpus BLEU via ``sacrebleu``, scaled to [0, 1] so every shipped metric shares one range."""

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = "Corpus-level BLEU (sacrebleu defaults, one reference per prediction), divided by 100."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated completions.
    references (list of str): expected completions.
Returns:
    bleu (float): in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        return {"bleu": sacrebleu.corpus_bleu(list(predictions), [list(references)]).score / 100}
