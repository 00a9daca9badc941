"""Clear errors instead of silence or tracebacks: an unreachable or hanging tracking server
fails in bounded time naming the URI and the cause; read-only commands never create a store;
bad versions and empty registries are one line; a corrupt tag costs only what it held."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import sqlalchemy

from modelyard.cli import main
from modelyard.registry import promote, status
from modelyard.registry import tags as t
from modelyard.registry.artifacts import client_for
from modelyard.registry.ledger import read_ledger
from modelyard.registry.stages import ensure_registered_model
from tests.net import free_port
from tests.registry.stores import gated_version, staged_version

MODELYARD = str(Path(sys.executable).parent / "modelyard")
# Far above what the bounded settings need (seconds, on a loaded box), below MLflow's defaults
# (120 s timeout, 7 retries with backoff 2: over 4 minutes): a hang fails the test.
BOUND_S = 150


def _run_all(env: dict[str, str], *commands: tuple[str, ...]) -> list[tuple[int, str]]:
    """Run CLI commands side by side (each is a fresh process); (exit code, stderr) of each."""
    return _run_each([(env, argv) for argv in commands])


def _run_each(runs: list[tuple[dict[str, str], tuple[str, ...]]]) -> list[tuple[int, str]]:
    """:func:`_run_all` with an environment of its own for each command."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "MLFLOW_"))}
    procs = [
        subprocess.Popen(
            [MODELYARD, *argv],
            env={**clean, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for env, argv in runs
    ]
    try:
        return [(p.wait(timeout=BOUND_S), p.stderr.read()) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
            p.stderr.close()


def _one_line_error(done: tuple[int, str]) -> str:
    code, stderr = done
    assert code == 2 and "Traceback" not in stderr, (code, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_an_unreachable_server_fails_fast_naming_uri_and_cause(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {
        "MODELYARD_HOME": str(tmp_path / "home"),
        "MODELYARD_MLFLOW_TRACKING_URI": uri,
        "MODELYARD_REGISTRY__LOCK_URL": f"file://{tmp_path / 'locks'}",
    }
    commands = (("registry", "status"), ("promote", "--to", "canary"), ("rollback",))
    for done in _run_all(env, *commands):  # default settings: bounded
        line = _one_line_error(done)
        assert uri in line and "Connection refused" in line, line
    # A database URI, bare and with a password in each place SQLAlchemy reads one from (the
    # userinfo, raw "/", "?" and "#" included, or the query): named, with the password masked.
    port = free_port()
    databases = {
        f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow": None,
        f"postgresql+psycopg2://postgres:s3/cr?t#x@127.0.0.1:{port}/mlflow": "s3/cr?t#x",
        f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow?password=pw-in-query": (
            "pw-in-query"
        ),
    }
    runs = [({**env, "MODELYARD_MLFLOW_TRACKING_URI": uri}, commands[0]) for uri in databases]
    for (database, secret), done in zip(databases.items(), _run_each(runs), strict=True):
        line = _one_line_error(done)
        assert "Connection refused" in line, line
        if secret is None:
            assert database in line, line
        else:
            assert secret not in line and database.replace(secret, "***") in line, line


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    with socket.socket() as hanging:  # accepts connections (the backlog), never answers
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(16)
        uri = f"http://127.0.0.1:{hanging.getsockname()[1]}"
        env = {
            "MODELYARD_HOME": str(tmp_path / "home"),
            "MODELYARD_MLFLOW_TRACKING_URI": uri,
            "MODELYARD_REGISTRY__HTTP_TIMEOUT_SECONDS": "2",
            "MODELYARD_REGISTRY__HTTP_MAX_RETRIES": "1",
        }
        line = _one_line_error(_run_all(env, ("registry", "status", "--json"))[0])
    assert uri in line and "timed out" in line and "2 s timeout" in line, line


def test_what_is_not_an_mlflow_store_is_one_line_and_left_alone(tmp_path: Path) -> None:
    """Another SQLite database or an empty file (never migrated into), a corrupt file, and an
    HTTP server that is not MLflow's (the Airflow UI's port, say)."""
    other = tmp_path / "airflow.db"
    with sqlite3.connect(other) as db:
        db.execute("create table dag (id int)")
    empty, corrupt = tmp_path / "empty.db", tmp_path / "corrupt.db"
    empty.touch()
    corrupt.write_bytes(bytes(range(256)) * 16)
    before = {p: p.read_bytes() for p in (other, empty, corrupt)}
    with socket.socket() as web:  # answers every request 404 with an HTML page
        web.bind(("127.0.0.1", 0))
        web.listen(16)
        stop = threading.Event()

        def answer() -> None:
            web.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = web.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.recv(65536)
                    body = b"<!DOCTYPE HTML><html>Not Found</html>"
                    conn.sendall(
                        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
                    )

        server = threading.Thread(target=answer, daemon=True)
        server.start()
        web_uri = f"http://127.0.0.1:{web.getsockname()[1]}"
        env = {
            "MODELYARD_HOME": str(tmp_path / "home"),
            "MODELYARD_REGISTRY__HTTP_MAX_RETRIES": "0",
        }
        uris = [f"sqlite:///{other}", f"sqlite:///{empty}", f"sqlite:///{corrupt}", web_uri]
        runs = [({**env, "MODELYARD_MLFLOW_TRACKING_URI": u}, ("registry", "status")) for u in uris]
        lines = [_one_line_error(done) for done in _run_each(runs)]
        stop.set()
        server.join()
    assert "holds no MLflow store" in lines[0] and "holds no MLflow store" in lines[1], lines
    assert "file is not a database" in lines[2], lines
    assert web_uri in lines[3] and "ENDPOINT_NOT_FOUND" in lines[3], lines
    assert {p: p.read_bytes() for p in before} == before


def test_read_only_and_move_commands_never_create_a_store(tmp_path: Path) -> None:
    home = tmp_path / "elsewhere" / ".local"
    env = {"MODELYARD_HOME": str(home)}
    for done in _run_all(
        env,
        ("registry", "status"),
        ("registry", "status", "--json"),
        ("promote", "--to", "canary"),
        ("approve", "--version", "1", "--reason", "looks fine"),
        ("rollback",),
    ):
        line = _one_line_error(done)
        assert str(home / "mlflow" / "mlflow.db") in line and f"MODELYARD_HOME={home}" in line
    assert not (tmp_path / "elsewhere").exists()


def test_a_database_without_an_mlflow_store_is_left_alone(tmp_path: Path, postgres_url) -> None:
    # Spelt as users write it: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3.
    bare = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    env = {"MODELYARD_HOME": str(tmp_path), "MODELYARD_MLFLOW_TRACKING_URI": bare}
    line = _one_line_error(_run_all(env, ("registry", "status"))[0])
    assert "holds no MLflow store" in line
    engine = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        assert sqlalchemy.inspect(conn).get_table_names() == []
    engine.dispose()


def _cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip()


def test_impossible_moves_are_one_line_each(settings, capsys) -> None:
    client = client_for(settings)
    client.create_experiment("a store with nothing registered")
    code, err = _cli(capsys, "promote", "--to", "canary")
    assert code == 2 and "no model named" in err and "registered yet" in err
    code, err = _cli(capsys, "rollback")
    assert code == 2 and "no model named" in err

    version = staged_version(settings)
    for bad, expected in (
        ("99", "has no version 99"),
        ("abc", "a version is a number such as 3, not 'abc'"),
        ("0", "not '0'"),
        ("9" * 23, "a version is a number"),  # past the stores' 64-bit column
        ("\u0663", "a version is a number"),  # an Arabic-Indic three: a digit, not ASCII
    ):
        code, err = _cli(capsys, "promote", "--to", "canary", "--version", bad)
        assert code == 2 and expected in err and "\n" not in err, err
    code, err = _cli(capsys, "approve", "--version", version, "--reason", "x")
    assert code == 2 and "does not hold canary" in err
    code, err = _cli(capsys, "rollback")
    assert code == 2 and "has no production version to roll back" in err
    code, err = _cli(capsys, "promote", "--to", "canary", "--reason", "x" * 5000)
    assert code == 2 and "keep it under" in err
    forged = "carol\n  #2   2026-11-26T14:20:00+00:00 bob  approve  v1 canary -> production"
    for flag in ("--reason", "--on-behalf-of"):  # a newline would forge a status-table line
        code, err = _cli(capsys, "promote", "--to", "canary", flag, forged)
        assert code == 2 and "one line of printable text" in err, err
    assert status(settings)["aliases"] == {"staging": version}  # nothing moved


def test_a_corrupt_tag_costs_only_what_it_held(settings, capsys) -> None:
    client = client_for(settings)
    name = settings.registered_model
    ensure_registered_model(client, name)
    good = {
        t.METRICS: json.dumps({"rouge_l": 0.5, "exact_match": 0.25}),
        t.GATE_MARGINS: json.dumps({"rouge_l.threshold": 0.2, "contamination.manifest": None}),
        t.GATE_INCUMBENT: json.dumps({"label": "base model", "version": None, "metrics": {}}),
        t.DATASET_VERSION: "ds-a",
        t.SUITE_VERSION: "suite-1",
    }
    versions = [gated_version(settings) for _ in range(4)]
    for version in versions:
        for key, value in good.items():
            client.set_model_version_tag(name, version, key, value)
    v1, v2, v3, v4 = versions
    client.set_model_version_tag(name, v1, t.METRICS, "{not json")
    client.set_model_version_tag(name, v2, t.GATE_MARGINS, '{"rouge_l.threshold": "high"}')
    client.set_model_version_tag(name, v2, t.GATE_INCUMBENT, "[1, 2]")
    client.set_model_version_tag(name, v3, t.METRICS, '{"rouge_l": "0.5", "bleu": 0.1}')
    client.set_model_version_tag(name, v3, t.scores_tag("suite-0"), "nan?")
    client.set_model_version_tag(name, v4, t.scores_tag("suite-0"), '{"bleu": NaN, "x": Infinity}')
    client.set_registered_model_alias(name, "staging", v4)
    promote(settings, "canary", actor="alice", reason="fine")
    client.set_registered_model_tag(name, f"{t.LEDGER_PREFIX}000050-handmade", "{oops")
    client.set_registered_model_tag(
        name, f"{t.LEDGER_PREFIX}000051-handmade", json.dumps({"at": 5, "action": ["x"]})
    )

    state = status(settings)
    rows = {v["version"]: v for v in state["versions"]}
    assert list(rows) == versions
    assert rows[v1]["metrics"] == {} and rows[v1]["dataset_version"] == "ds-a"
    assert rows[v1]["notes"][0].startswith(f"unreadable tag {t.METRICS}")
    assert rows[v2]["gate_margins"] == {} and rows[v2]["compared_with"] == {}
    assert rows[v2]["metrics"] == {"rouge_l": 0.5, "exact_match": 0.25}
    assert len(rows[v2]["notes"]) == 2
    assert rows[v3]["metrics"] == {"bleu": 0.1}
    assert any("rouge_l is not a number" in n for n in rows[v3]["notes"])
    assert rows[v3]["scores_by_suite"]["suite-0"] == {}
    assert rows[v4]["scores_by_suite"]["suite-0"] == {}  # not finite: no JSON number
    assert len(rows[v4]["notes"]) == 2 and rows[v4]["aliases"] == ["canary"]
    assert rows[v4]["gate_margins"] == {"rouge_l.threshold": 0.2, "contamination.manifest": None}

    ledger = read_ledger(client, name)
    assert [e["action"] for e in ledger] == ["promote", None, None]
    assert ledger[1]["notes"][0].startswith(f"unreadable tag {t.LEDGER_PREFIX}000050-handmade: ")
    assert any("unreadable field at" in n for n in ledger[2]["notes"])
    json.dumps(state, allow_nan=False)  # what the registry page and `status --json` serve

    capsys.readouterr()
    assert main(["registry", "status"]) == 0
    table = capsys.readouterr().out
    assert f"note: unreadable tag {t.METRICS}" in table and "000050-handmade" in table
    assert main(["registry", "status", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["versions"]) == 4

    # Transitions read the same ledger: the unreadable entries are skipped, never trusted.
    client.set_registered_model_alias(name, "staging", v2)
    promote(settings, "production", actor="bob", reason="still works")
    assert status(settings)["aliases"] == {"production": v4, "staging": v2}
