"""Share of predictions that are a JSON value and, when a JSON schema is given, valid against it."""

import json

import datasets
import evaluate
import jsonschema

_DESCRIPTION = "Fraction of predictions that parse as JSON and match the optional JSON schema."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated completions.
    references (list of str): expected completions (unused; kept so every metric shares inputs).
    schema (dict, optional): JSON schema each parsed prediction must satisfy.
Returns:
    format_validity (float): in [0, 1].
"""


def _valid(text: str, validator) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return validator is None or validator.is_valid(value)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FormatValidity(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, schema=None):
        validator = None
        if schema is not None:
            jsonschema.validators.validator_for(schema).check_schema(schema)
            validator = jsonschema.validators.validator_for(schema)(schema)
        hits = sum(_valid(p, validator) for p in predictions)
        return {"format_validity": hits / len(predictions) if predictions else 0.0}
