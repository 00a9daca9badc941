"""Curation: a raw partition becomes a validated, content-addressed dataset version.

``pipeline.curate`` does the work (the CLI and the DAG both call it); ``tasks`` holds the
three DAG-facing steps (curate, validate, publish). Nothing is imported here, so readers of
published versions (``storage``, ``publish``) don't pay for numpy and the MinHash machinery.
"""
