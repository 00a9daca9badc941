"""Data validation gates (Great Expectations, in-process)."""

from modelyard.validation.gate import GateFailed, run_gate

__all__ = ["GateFailed", "run_gate"]
