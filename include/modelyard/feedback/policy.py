"""One decision per rated answer: harvested as a training record, or only counted.

A correction is the user's better answer, so it replaces the served one whatever the rating;
a thumbs-up keeps the answer as served; a thumbs-down without a correction says what not to
say but not what to say instead, so it is never trained on (supervised fine-tuning has no use
for a negative example). What the policy in ``settings.feedback`` turns off is counted too.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.serving.logreader import FeedbackRecord
from modelyard.settings import FeedbackSettings

HARVESTED = ("thumbs_up", "correction")
#: Outcomes that are counted in the harvest report and never written as a record.
COUNTED = {
    "rated_down": "rated down without a correction",
    "not_stored": 'the request was sent with "store": false: no text was kept',
    "no_answer": "the request failed: there is no answer to keep",
    "invalid_format": "rated up, but the answer failed the format check (require_valid_format)",
    "excluded": "a kind of feedback the policy does not harvest",
    "no_request_logged": "rated, but the request's log entry was dropped (a full log queue)",
}


@dataclass(frozen=True)
class Decision:
    outcome: str  # one of HARVESTED or a key of COUNTED
    completion: str | None = None  # the answer to train on, when harvested


def decide(fb: FeedbackRecord, policy: FeedbackSettings) -> Decision:
    if not fb.stored or fb.prompt is None:
        return Decision("not_stored")
    if fb.correction is not None and fb.correction.strip():
        if policy.include_corrections:
            return Decision("correction", fb.correction)
        return Decision("excluded")  # corrected means the served answer was wrong: never it
    if fb.rating < 0:
        return Decision("rated_down")
    if fb.completion is None:
        return Decision("no_answer")
    if not policy.include_thumbs_up:
        return Decision("excluded")
    if policy.require_valid_format and fb.format_valid is not True:
        return Decision("invalid_format")
    return Decision("thumbs_up", fb.completion)
