"""Request shapes: JSON's loose types are refused where they would change what is served."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from modelyard.serving.protocol import ChatCompletionRequest, FeedbackRequest

BASE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    "extra",
    [
        {"max_tokens": True},  # was 1 token
        {"max_tokens": "5"},
        {"max_completion_tokens": 2.0},
        {"temperature": float("nan")},  # was "should be less than or equal to 2"
        {"temperature": "0.7"},
        {"store": "no"},  # was store: false
    ],
)
def test_loose_types_are_refused(extra) -> None:
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate_json(json.dumps({**BASE, **extra}))


def test_what_clients_send_is_accepted() -> None:
    body = {**BASE, "max_tokens": 5, "temperature": 1, "store": False}
    assert ChatCompletionRequest.model_validate_json(json.dumps(body)).temperature == 1.0


@pytest.mark.parametrize("rating", [True, 1.0, "1", 5])
def test_a_rating_is_the_integer_1_or_minus_1(rating) -> None:
    with pytest.raises(ValidationError):
        FeedbackRequest.model_validate_json(json.dumps({"response_id": "r", "rating": rating}))
    assert FeedbackRequest(response_id="r", rating=-1).rating == -1
