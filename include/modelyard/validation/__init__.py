"""Data validation gates (Great Expectations, in-process).

``run_gate`` and ``GateFailed`` are loaded on first use: gate worker processes import
``modelyard.validation.columns`` only, without pandas and the gate's own imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.validation.gate import GateFailed, run_gate

__all__ = ["GateFailed", "run_gate"]


def __getattr__(name: str):
    if name in __all__:
        from modelyard.validation import gate

        return getattr(gate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
