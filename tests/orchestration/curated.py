"""What curation left in an embedded home: the published versions and their Asset events."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from modelyard.assets import CURATED_DATASET


def published_versions(settings) -> dict[str, str]:
    """Partition date -> the dataset version published for it."""
    pointers = settings.storage_path / "datasets" / "_by_date"
    return {p.stem: json.loads(p.read_text())["version"] for p in pointers.glob("*.json")}


def curated_events(settings) -> list[str]:
    """The dataset versions announced on the curated-dataset Asset, in order."""
    with sqlite3.connect(Path(settings.home) / "airflow" / "airflow.db") as conn:
        rows = conn.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.name = ? ORDER BY e.id",
            (CURATED_DATASET.name,),
        ).fetchall()
    return [json.loads(extra)["version"] for (extra,) in rows]
