"""Candidate evaluation: pinned eval suites, shipped metric modules, the offline gate.

Nothing is imported eagerly (``evaluate_candidate`` pulls in torch and ``evaluate``), so light
users such as the serving gateway's format check import only what they use.
"""

__all__ = ["evaluate_candidate"]


def __getattr__(name: str):
    if name == "evaluate_candidate":
        from modelyard.evaluation.candidate import evaluate_candidate

        return evaluate_candidate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
