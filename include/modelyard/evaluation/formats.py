"""Format validity per prediction: JSON, and valid against a JSON schema when one is given.

The ``format_validity`` metric module is the mean of these verdicts; the serving gateway's
request log stores them per request. Kept free of heavy imports so both can use it.
"""

from __future__ import annotations

import json

import jsonschema


def _valid(text: str, validator) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return validator is None or validator.is_valid(value)


def verdicts(predictions: list[str], schema: dict | None = None) -> list[bool]:
    """One verdict per prediction; a malformed ``schema`` raises before any is judged."""
    validator = None
    if schema is not None:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        validator = cls(schema)
    return [_valid(p, validator) for p in predictions]
