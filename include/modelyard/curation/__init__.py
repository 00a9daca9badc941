"""Curation: a raw partition becomes a validated, content-addressed dataset version.

``pipeline.curate`` does the work (the CLI and the DAG both call it); ``tasks`` holds the
three DAG-facing steps (curate, validate, publish).
"""

from modelyard.curation.pipeline import REASONS, curate

__all__ = ["REASONS", "curate"]
