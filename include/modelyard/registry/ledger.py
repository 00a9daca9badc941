"""The promotion ledger: every alias transition and approval, stored with the registered model.

Design: one registered-model tag per entry, ``modelyard.ledger.<seq>-<uid>`` holding a JSON
object (who, on whose behalf, when, from which host, action, version, from/to stage, the version
that held the target alias before (``from_version``), why, which DAG run). Tags live in the
registry database next to the aliases they describe, so the ledger survives alias moves, needs
no extra store, is written in one row insert, shows on the model's page in the MLflow UI and is
read with one ``get_registered_model`` call.

MLflow has no insert-if-absent: ``set_registered_model_tag`` silently replaces a tag with the
same key, on every store (SQL ``merge``, the REST server). So no two appends may ever pick the
same key: ``<seq>`` is one more than the highest sequence read before writing (gap-free and
ordered when appends hold the transition lock, as every modelyard transition does) and
``<uid>`` is random, so even appenders racing without the lock each write their own row.
Reading orders entries by ``(seq, uid)``: a total order, the same on every read; an entry's
``id`` (its key) never changes, and ``seq`` is its position in that order.
"""

from __future__ import annotations

import json
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient

from modelyard.registry.tags import LEDGER_PREFIX

#: Fields every entry has, with the types readers rely on (str or None).
FIELDS = (
    "at",
    "actor",
    "on_behalf_of",
    "action",
    "version",
    "from_stage",
    "to_stage",
    "from_version",
    "reason",
    "dag_id",
    "dag_run_id",
    "host",
)
REQUIRED = ("at", "action", "version")
VERSION_FIELDS = ("version", "from_version")


def _sequence(suffix: str) -> int | None:
    """The sequence in a key suffix: ``000012-9f3a...`` (or the older ``000012``)."""
    seq = suffix.partition("-")[0]
    return int(seq) if seq.isdigit() else None


def _order(suffix: str) -> tuple[int, str]:
    """Entries by sequence, then by the random part; a hand-made key that has none sorts last."""
    seq = _sequence(suffix)
    return (seq, suffix) if seq is not None else (2**63, suffix)


def _entry(suffix: str, raw: str) -> dict[str, Any]:
    """One stored entry as readers need it; what cannot be read is named in ``notes``."""
    notes: list[str] = []
    try:
        stored = json.loads(raw)
    except ValueError as exc:
        stored, notes = {}, [f"unreadable tag {LEDGER_PREFIX}{suffix}: {exc}"]
    if not isinstance(stored, dict):
        stored, notes = {}, [f"unreadable tag {LEDGER_PREFIX}{suffix}: not a JSON object"]
    entry = dict(stored)
    for field in FIELDS:
        value = stored.get(field)
        if field in VERSION_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # versions written by hand as numbers
        if value is not None and not isinstance(value, str):
            notes.append(f"unreadable field {field} in {LEDGER_PREFIX}{suffix}: {value!r}")
            value = None
        elif value is None and field in REQUIRED and not notes:
            notes.append(f"{LEDGER_PREFIX}{suffix} has no {field}")
        entry[field] = value
    entry["id"] = suffix
    entry["notes"] = notes
    return entry


def read_ledger(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    """Every entry in ledger order (``seq`` = position, from 1); unreadable ones carry notes."""
    tags = client.get_registered_model(name).tags
    suffixes = sorted(
        (k.removeprefix(LEDGER_PREFIX) for k in tags if k.startswith(LEDGER_PREFIX)), key=_order
    )
    entries = [_entry(s, tags[LEDGER_PREFIX + s]) for s in suffixes]
    for position, entry in enumerate(entries, start=1):
        entry["seq"] = position
    return entries


def append_entry(client: MlflowClient, name: str, actor: str, **entry: Any) -> dict[str, Any]:
    """Append one entry under a key no other append can pick; returns it with seq, id and time."""
    tags = client.get_registered_model(name).tags
    sequences = (
        _sequence(k.removeprefix(LEDGER_PREFIX)) for k in tags if k.startswith(LEDGER_PREFIX)
    )
    seq = 1 + max((s for s in sequences if s is not None), default=0)
    suffix = f"{seq:06d}-{uuid.uuid4().hex[:12]}"
    record = {
        "seq": seq,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "actor": actor,
        "host": socket.gethostname(),  # from where: the machine that made the change
        **entry,
    }
    client.set_registered_model_tag(name, LEDGER_PREFIX + suffix, json.dumps(record))
    return {**record, "id": suffix, "notes": []}
