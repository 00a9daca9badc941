"""Airflow Assets shared by the DAGs (kept free of heavy imports: DAG files import this)."""

from __future__ import annotations

from airflow.sdk import Asset

#: Updated once per newly published dataset version; the event's ``extra`` carries
#: ``{"version", "path", "partition"}``, so consumers train on exactly what was published.
CURATED_DATASET = Asset(name="modelyard_curated_dataset", uri="modelyard://datasets/curated")
