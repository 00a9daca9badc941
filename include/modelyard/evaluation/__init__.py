"""Candidate evaluation: pinned eval suites, shipped metric modules, the offline gate."""

from modelyard.evaluation.candidate import evaluate_candidate

__all__ = ["evaluate_candidate"]
