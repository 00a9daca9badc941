"""register_candidate records the training snapshot and the person, and finds it again.

A real MLflow store and a real (1-step) adapter: the version carries the snapshot id and its
version list, the ledger names who triggered the run, the status (and so the registry page)
shows the snapshot, and the lookup ``finetune_model`` short-circuits on matches the same
snapshot and recipe only.
"""

from __future__ import annotations

import json

from evaluation.helpers import train_result

from modelyard.registry import register_candidate, status, tags
from modelyard.registry.ledger import read_ledger
from modelyard.tasks.snapshots import already_trained, trained_version


def test_snapshot_lineage_actor_and_the_same_snapshot_lookup(settings, tiny_model, weak_adapter):
    from mlflow import MlflowClient

    trained = train_result(settings, weak_adapter, tiny_model, "snap")
    snapshot = {"id": "snap-0123456789ab", "versions": ["ds-aaaaaaaaaaaa", "ds-bbbbbbbbbbbb"]}
    dataset = {"version": "ds-bbbbbbbbbbbb", "content_hash": "b" * 64, "snapshot": snapshot}
    report = {  # the gate is not under test: a refused report as evaluate_candidate returns it
        "suite_version": "suite-s",
        "candidate": {"metrics": {"rouge_l": 0.1}},
        "gate": {"passed": False, "failed": ["rouge_l.threshold"], "checks": []},
        "artifacts": {},
    }
    ctx = {"dag_id": "finetune_model", "run_id": "manual__1", "actor": "alice"}
    registered = register_candidate(trained, report, dataset, ctx, settings)

    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    mv = client.get_model_version(settings.registered_model, registered["version"])
    assert mv.tags[tags.SNAPSHOT] == snapshot["id"]
    assert json.loads(mv.tags[tags.SNAPSHOT_VERSIONS]) == snapshot["versions"]
    (entry,) = read_ledger(client, settings.registered_model)
    assert entry["actor"] == "alice" and entry["gate"] == "failed"
    (row,) = status(settings)["versions"]
    assert row["lineage"][tags.SNAPSHOT] == snapshot["id"]

    recipe = trained["config_hash"]
    assert trained_version(settings, snapshot["id"], recipe) == registered["version"]
    assert trained_version(settings, snapshot["id"], "another-recipe") is None
    assert trained_version(settings, "snap-ffffffffffff", recipe) is None
    plan = {"dataset": {"snapshot": snapshot}, "config_hash": recipe}
    assert f"already trained as version {registered['version']}" in already_trained(plan, settings)
