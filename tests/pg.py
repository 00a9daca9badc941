"""A PostgreSQL server for the distributed-mode tests.

Uses the one on 127.0.0.1:5432 when it answers (trust auth, as on CI); otherwise starts a
throwaway cluster with the local ``initdb``/``pg_ctl`` (a new developer's machine), and skips
only when PostgreSQL is not installed at all.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.net import free_port


def _answers(host: str, port: int) -> bool:
    try:
        import psycopg2

        psycopg2.connect(
            host=host, port=port, user="postgres", dbname="postgres", connect_timeout=3
        ).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable", we then start our own
        return False


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@contextmanager
def postgres_server(workdir: Path) -> Iterator[tuple[str, int]]:
    if _answers("127.0.0.1", 5432):
        yield "127.0.0.1", 5432
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL is neither running on 127.0.0.1:5432 nor installed")
    port = free_port()
    data = workdir / "pgdata"
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
    if run_as:
        subprocess.run(["chown", "-R", "postgres", str(workdir)], check=True)
    subprocess.run(
        [*run_as, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    # -l: the server must not inherit our pipes, or run() would wait for it to exit
    subprocess.run(
        [
            *run_as,
            pg_ctl,
            "-D",
            str(data),
            "-w",
            "-l",
            str(workdir / "pg.log"),
            "-o",
            f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield "127.0.0.1", port
    finally:
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True
        )


def _admin(host: str, port: int, statement: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


@contextmanager
def database(host: str, port: int) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"modelyard_test_{uuid.uuid4().hex[:10]}"
    _admin(host, port, f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@{host}:{port}/{name}"
    finally:
        _admin(host, port, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
