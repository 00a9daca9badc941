from evaluation.helpers import (  # noqa: F401  (shared session fixtures)
    eval_sample,
    good_adapter,
    weak_adapter,
)
