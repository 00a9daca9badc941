"""`modelyard airflow ARGS` and `modelyard backfill`'s refusals, as a user runs them (real
processes): the Airflow CLI sees the embedded environment and its exit code comes back unchanged;
a bad range, a missing scheduler or one that dies mid-backfill is one clear line, not a hang."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import date
from pathlib import Path

import psutil
import pytest

from modelyard.airflow_env import VENV_BIN, init_airflow, running_airflow
from modelyard.sampledata import write_partition
from modelyard.settings import PROJECT_ROOT
from tests.net import free_port


def _modelyard(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "modelyard"), *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_airflow_runs_against_the_embedded_home_and_passes_its_exit_code(settings):
    home = Path(settings.home)
    dags = _modelyard("airflow", "config", "get-value", "core", "dags_folder")
    assert dags.returncode == 0, dags.stderr
    assert dags.stdout.strip() == str(PROJECT_ROOT / "dags")
    db = _modelyard("airflow", "config", "get-value", "database", "sql_alchemy_conn")
    assert db.stdout.strip() == f"sqlite:///{home / 'airflow' / 'airflow.db'}"
    assert (home / "airflow" / "airflow.db").exists()  # a fresh home is migrated first

    plugins = _modelyard("airflow", "plugins", "-o", "json")
    assert "modelyard" in [p["name"] for p in json.loads(plugins.stdout)]

    assert _modelyard("airflow", "pools", "get", "no-such-pool").returncode == 1
    # A user's pool size survives the next Airflow start (each one runs init_airflow).
    assert _modelyard("airflow", "pools", "set", "gpu", "3", "two GPUs").returncode == 0
    init_airflow(settings)
    gpu = json.loads(_modelyard("airflow", "pools", "get", "gpu", "-o", "json").stdout)
    assert [(p["pool"], int(p["slots"])) for p in gpu] == [("gpu", 3)]
    assert _modelyard("airflow", "no-such-command").returncode == 2


@pytest.mark.parametrize(
    ("start", "end", "says"),
    [
        ("2026-10-03", "2026-10-01", "--from 2026-10-03 is after --to 2026-10-01"),
        ("2026-10-01", "2999-01-01", "--to 2999-01-01 has not ended yet"),
        ("2026-02-30", "2026-03-01", "'2026-02-30' is not a date (YYYY-MM-DD)"),
        ("2026-10-01", "last week", "'last week' is not a date (YYYY-MM-DD)"),
    ],
)
def test_a_bad_range_is_one_line_and_touches_nothing(settings, start, end, says):
    result = _modelyard("backfill", "--from", start, "--to", end, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert says in result.stderr.strip().splitlines()[-1]
    assert not (Path(settings.home) / "airflow").exists()


def test_without_a_scheduler_it_says_how_to_get_one(settings):
    airflow_home = Path(settings.home) / "airflow"
    for record in (None, "stale"):
        if record == "stale":  # an Airflow that was started on this home and has died since
            gone = subprocess.Popen(["true"])
            gone.wait()
            airflow_home.mkdir(parents=True)
            (airflow_home / "api_server.json").write_text(
                json.dumps({"url": "http://127.0.0.1:9", "pid": gone.pid})
            )
        result = _modelyard("backfill", "--from", "2026-10-01", "--to", "2026-10-03", timeout=60)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "no Airflow scheduler is running" in lines[0]
        assert "make airflow" in lines[0] and "--start-airflow" in lines[0]
        assert not (airflow_home / "airflow.db").exists()


def test_a_scheduler_that_dies_mid_backfill_is_one_line_not_a_hang(settings):
    """`airflow standalone` does not restart a scheduler that died (seen here: its loop crashing
    on a run a failed SQLite write had removed), so nothing would ever end the wait."""
    write_partition(settings.storage_path / "raw", date(2026, 10, 1), n=20)
    with running_airflow(settings, port=free_port()) as base_url:
        standalone = json.loads((Path(settings.home) / "airflow" / "api_server.json").read_text())
        (scheduler,) = [
            p
            for p in psutil.Process(standalone["pid"]).children(recursive=True)
            if p.cmdline()[-1:] == ["scheduler"]
        ]
        cli = subprocess.Popen(
            [str(VENV_BIN / "modelyard"), "backfill", "--from", "2026-10-01", "--to", "2026-10-01"],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in cli.stdout:
            if line.startswith("backfill "):  # created and followed: the scheduler dies now
                scheduler.kill()
                break
        _, stderr = cli.communicate(timeout=300)
    assert cli.returncode == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert f"the scheduler of {base_url} has stopped" in lines[0]
    assert "so 2026-10-01 cannot run" in lines[0]
