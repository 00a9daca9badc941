"""``finetune_model`` through Airflow (``airflow dags test``: real DagRuns, XComs, callbacks).

Two runs on the tiny model: a traversal in the ``dataset_version`` Param fails ``prepare`` with
one line and trains nothing (today's code trained on the directory it pointed at); a candidate
trained for 2 steps is refused by the gate, registered anyway (with its snapshot lineage and the
run's person) while the ``gate`` task fails and the notifier posts to a real local webhook. The
no-duplicate short-circuit and the run notes are checked under a real scheduler
(``test_backfill``), which serves the REST API the notes go through.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from modelyard.airflow_env import airflow, init_airflow
from modelyard.sampledata import curated_records, write_curated
from tests.orchestration.test_finetune_inputs import publish

pytestmark = pytest.mark.airflow


class Webhook:
    """A real HTTP server on localhost recording the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def _dags_test(settings, conf: dict):
    return airflow(
        ["dags", "test", "finetune_model", "--conf", json.dumps(conf)],
        settings,
        check=False,
        capture=True,
    )


def _last_run(settings) -> tuple[str, dict[str, tuple[str, int]]]:
    with sqlite3.connect(Path(settings.home) / "airflow" / "airflow.db") as conn:
        state, run_id = conn.execute(
            "SELECT state, run_id FROM dag_run WHERE dag_id = 'finetune_model' ORDER BY id DESC"
        ).fetchone()
        rows = conn.execute(
            "SELECT task_id, state, try_number FROM task_instance "
            "WHERE dag_id = 'finetune_model' AND run_id = ?",
            (run_id,),
        ).fetchall()
    return state, {task: (ti_state, tries) for task, ti_state, tries in rows}


def test_bad_input_is_refused_and_a_refused_candidate_is_registered_and_visible(
    airflow_settings, monkeypatch, webhook, tmp_path
):
    from mlflow import MlflowClient

    from modelyard.registry import tags
    from modelyard.registry.ledger import read_ledger

    monkeypatch.setenv("MODELYARD_NOTIFY__WEBHOOK_URL", webhook.url)
    # What a refusal does is the subject, not the scores: 8 generated tokens per eval record
    # instead of 48 (generation is most of `evaluate`'s time on CPU).
    monkeypatch.setenv("MODELYARD_GATE__MAX_NEW_TOKENS", "8")
    settings = airflow_settings
    records = curated_records(80)
    versions = [
        publish(settings, "2026-10-01", records[:30], records[30:40]),
        # Day 2's published train side holds day 1's held-out record records[30] (another id):
        # the snapshot leaves it out, and the leak check reads the snapshot, what was trained on.
        publish(
            settings, "2026-10-02", [*records[40:70], {**records[30], "id": "x"}], records[70:80]
        ),
    ]
    init_airflow(settings)

    # 1. A traversal to data the gate never saw: prepare fails in one line, nothing trains.
    outside = write_curated(tmp_path / "outside", curated_records(20, seed=5), [])
    (outside / "manifest.json").write_text(json.dumps({"version": "ds-000000000000"}))
    bad = "../../../outside"
    done = _dags_test(settings, {"dataset_version": bad})
    assert done.returncode != 0
    assert f"dataset_version '{bad}' is not a dataset version id" in done.stdout + done.stderr
    state, tis = _last_run(settings)
    assert state == "failed" and tis["prepare"] == ("failed", 1)  # no retry of bad input
    assert tis["train"][0] == "upstream_failed"

    # 2. Two steps of training: refused. Registered anyway, the gate task fails, alert sent.
    done = _dags_test(settings, {"max_steps": 2})
    output = done.stdout + done.stderr
    state, tis = _last_run(settings)
    assert state == "failed", output[-3000:]
    assert tis["register"][0] == "success" and tis["gate"] == ("failed", 1)
    assert "gate refused version 1" in output and "failed:" in output
    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    (mv,) = client.search_model_versions(f"name='{settings.registered_model}'")
    assert mv.tags[tags.GATE_DECISION] == "failed"
    assert json.loads(mv.tags[tags.SNAPSHOT_VERSIONS]) == versions
    assert mv.tags[tags.SNAPSHOT].startswith("snap-")
    assert mv.tags[tags.DATASET_VERSION] == versions[-1]
    (entry,) = read_ledger(client, settings.registered_model)
    assert entry["actor"] == "dag_test"  # who triggered (`dags test` names itself), not a default
    (alert,) = webhook.received
    assert alert["event"] == "refused" and alert["dag_id"] == "finetune_model"
    assert alert["task_id"] == "gate" and "gate refused version 1" in alert["message"]
    snapshot_train = Path(
        settings.storage_path / "snapshots" / mv.tags[tags.SNAPSHOT] / "train.jsonl"
    )
    assert len(snapshot_train.read_text().splitlines()) == 60
    from mlflow.artifacts import download_artifacts

    report = json.loads(Path(download_artifacts(mv.tags[tags.GATE_REPORT])).read_text())
    assert report["train_file"] == str(snapshot_train)
    assert "contamination.overlap" not in report["gate"]["failed"], report["gate"]["failed"]
