"""The promotion ledger: every alias transition, stored with the registered model.

Design: one registered-model tag per entry, ``modelyard.ledger.<000001>`` holding a JSON object
(who, when, action, version, from/to stage, the version that held the target alias
before (``from_version``), why, which DAG run). Tags live in the
registry database next to the aliases they describe, so the ledger survives alias moves, needs
no extra store, is written in one row insert (no read-modify-write of a file artifact that a
crash could truncate), shows on the model's page in the MLflow UI and is read by the CLI with
one ``get_registered_model`` call. Appends happen under the transition lock
(``modelyard.registry.lock``), which makes the sequence numbers gap-free and ordered.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient

from modelyard.registry.tags import LEDGER_PREFIX


def read_ledger(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    tags = client.get_registered_model(name).tags
    return [json.loads(tags[k]) for k in sorted(k for k in tags if k.startswith(LEDGER_PREFIX))]


def append_entry(client: MlflowClient, name: str, **entry: Any) -> dict[str, Any]:
    """Append one entry (call under the transition lock); returns it with seq and time."""
    seq = len(read_ledger(client, name)) + 1
    record = {
        "seq": seq,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "actor": entry.pop("actor", None) or getpass.getuser(),
        **entry,
    }
    client.set_registered_model_tag(name, f"{LEDGER_PREFIX}{seq:06d}", json.dumps(record))
    return record
