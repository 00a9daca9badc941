"""Base of the metric modules shipped in ``metrics/``: string predictions against references.

Each module stays a standalone ``evaluate`` script (loaded with ``evaluate.load(path)``, never
from the hub); this base only holds the ``MetricInfo`` boilerplate they would otherwise repeat.
Modules import this module, not the class: ``evaluate.load`` takes the first metric class it
finds in a module's namespace as that module's metric.
"""

from __future__ import annotations

import datasets
import evaluate


class TextPairMetric(evaluate.Metric):
    summary: str = ""
    inputs_doc: str = """
    Args:
        predictions (list of str): generated completions.
        references (list of str): expected completions.
    """

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=self.summary,
            citation="",
            inputs_description=self.inputs_doc,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )
