"""Ledger appends racing in several processes, with no lock held, lose nothing on every store
modelyard supports (SQLite, PostgreSQL, a real ``mlflow server``), and reads give one order."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from modelyard.registry.artifacts import client_for
from modelyard.registry.ledger import append_entry, read_ledger
from modelyard.registry.stages import ensure_registered_model
from modelyard.registry.tags import LEDGER_PREFIX
from modelyard.settings import Settings
from tests.registry.concurrently import at_once
from tests.registry.stores import with_store

WRITERS = 4
APPENDS = 12


def _append_worker(settings: Settings, writer: int, barrier, results) -> None:
    client = client_for(settings)
    barrier.wait()
    try:
        for i in range(APPENDS):
            append_entry(
                client,
                settings.registered_model,
                actor=f"writer-{writer}",
                action="test",
                version="1",
                reason=f"{writer}:{i}",
            )
        results.put(("ok", writer))
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        results.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.fixture(params=["sqlite", "postgres", "http"])
def store(request, settings) -> Settings:
    if request.param == "sqlite":
        uri = f"sqlite:///{settings.home / 'ledger.db'}"
        settings.home.mkdir(parents=True)
    elif request.param == "postgres":
        uri = request.getfixturevalue("postgres_url")
    else:
        uri = request.getfixturevalue("mlflow_http")
    return with_store(settings, uri)


def test_concurrent_appends_keep_every_entry_in_one_stable_order(store: Settings) -> None:
    client = client_for(store)
    name = store.registered_model
    ensure_registered_model(client, name)

    outcomes = at_once(_append_worker, [(store, w) for w in range(WRITERS)], timeout=300)
    assert all(kind == "ok" for kind, _ in outcomes), outcomes

    ledger = read_ledger(client, name)
    assert Counter(e["reason"] for e in ledger) == Counter(
        f"{w}:{i}" for w in range(WRITERS) for i in range(APPENDS)
    )
    assert [e["seq"] for e in ledger] == list(range(1, WRITERS * APPENDS + 1))
    assert [e["id"] for e in read_ledger(client, name)] == [e["id"] for e in ledger]
    for w in range(WRITERS):  # each writer's entries in the order it appended them
        mine = [int(e["reason"].split(":")[1]) for e in ledger if e["actor"] == f"writer-{w}"]
        assert mine == list(range(APPENDS))
    # The appenders really raced: several picked the same sequence number, and none was lost.
    claimed = Counter(e["id"].split("-")[0] for e in ledger)
    assert max(claimed.values()) > 1


def test_entries_written_before_unique_keys_read_first(settings) -> None:
    """Stores written by earlier modelyard versions keep their ledger, in its order."""
    client = client_for(settings)
    name = settings.registered_model
    ensure_registered_model(client, name)
    for seq in (1, 2):
        old = {"seq": seq, "at": f"2026-01-0{seq}T00:00:00+00:00", "actor": "old", "action": "x"}
        client.set_registered_model_tag(
            name, f"{LEDGER_PREFIX}{seq:06d}", json.dumps({**old, "version": str(seq)})
        )
    new = append_entry(client, name, actor="new", action="x", version="3")
    assert new["seq"] == 3
    ledger = read_ledger(client, name)
    assert [(e["seq"], e["actor"], e["version"]) for e in ledger] == [
        (1, "old", "1"),
        (2, "old", "2"),
        (3, "new", "3"),
    ]
    assert all(not e["notes"] for e in ledger)
