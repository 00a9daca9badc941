"""The whole pipeline through Airflow on the embedded default, twice.

`modelyard demo` curates three dates with a real backfill of curate_dataset under a scheduler,
then runs finetune_model and promote_model with `airflow dags test` (real DagRuns, XComs,
Params and Asset events in the metadata DB), on the tiny model. The registry must then hold
one version with full lineage, holding production, whose scores beat the base model's on the
same eval-suite version. A second run curates every date again, reports each "unchanged"
(same version, no second Asset event) and changes nothing.
"""

from __future__ import annotations

import json

import pytest

from modelyard.demo import DEMO_DAYS, run_demo, what_changed
from modelyard.registry import tags
from tests.orchestration.curated import curated_events, published_versions

pytestmark = [pytest.mark.airflow, pytest.mark.scheduler]


def test_demo_trains_gates_and_promotes_then_is_idempotent(airflow_settings, capsys):
    from mlflow import MlflowClient

    settings = airflow_settings
    # The demo's own recipe: a snapshot of three days needs its 100 steps to learn the format.
    first = run_demo(settings, canary=False)

    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    versions = client.search_model_versions(f"name='{settings.registered_model}'")
    assert len(versions) == 1
    version = versions[0]
    lineage = version.tags
    for tag in (
        tags.DATASET_VERSION,
        tags.DATASET_HASH,
        tags.BASE_MODEL,
        tags.CONFIG_HASH,
        tags.GIT_SHA,
        tags.SUITE_VERSION,
        tags.DAG_ID,
        tags.DAG_RUN_ID,
        tags.MLFLOW_RUN_ID,
    ):
        assert lineage.get(tag), f"missing lineage tag {tag}"
    assert lineage[tags.DAG_ID] == "finetune_model"
    assert lineage[tags.BASE_MODEL] == settings.default_base_model
    assert lineage[tags.GATE_DECISION] == "passed"

    model = client.get_registered_model(settings.registered_model)
    assert model.aliases == {"production": version.version}
    assert [entry["to_stage"] for entry in first["ledger"]] == ["staging", "canary", "production"]
    assert first["ledger"][0]["dag_run_id"] == lineage[tags.DAG_RUN_ID]

    # The candidate beat the base model on the same eval-suite version.
    row = first["versions"][0]
    assert row["suite_version"] == lineage[tags.SUITE_VERSION]
    assert row["compared_with"]["label"] == "base model"
    primary = settings.gate.primary_metric
    assert row["metrics"][primary] > row["compared_with"]["metrics"][primary] + 0.1
    assert row["metrics"]["eval_loss"] < row["compared_with"]["metrics"]["eval_loss"]
    assert json.loads(lineage[tags.METRICS])[primary] == row["metrics"][primary]

    published = published_versions(settings)
    events = curated_events(settings)
    assert sorted(events) == sorted(published.values()) and len(published) == DEMO_DAYS
    capsys.readouterr()
    second = run_demo(settings, canary=False)
    out = capsys.readouterr().out
    # Every date was curated again (its backfill run re-ran) and published the same version:
    # no new version, no second Asset event, so nothing downstream runs again.
    for day, version in published.items():
        assert f"{day}  {version}  unchanged" in out, out
    assert published_versions(settings) == published and curated_events(settings) == events
    assert "already trained and registered" in out
    assert what_changed(first, second) == [
        "nothing changed: the registry already held this pipeline's result"
    ]
    assert len(client.search_model_versions(f"name='{settings.registered_model}'")) == 1
