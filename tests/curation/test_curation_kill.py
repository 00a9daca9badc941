"""Killing `modelyard curate` leaves nothing behind: its worker processes die with it (SIGKILL
included), SIGTERM cleans up like any failure, and the next run removes stale scratch."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from curation_planting import long_record, write_lines

from modelyard.settings import Settings

MODELYARD = Path(sys.executable).parent / "modelyard"


@pytest.fixture
def busy_run(store: Settings, tmp_path: Path):
    """Start `modelyard curate` on a partition large enough to keep its workers busy for a
    while; yields (process, its worker processes, output dir) once the workers run."""
    partition = tmp_path / "raw" / "2026-11-20"
    write_lines(partition / "part-0.jsonl", [long_record(s, f"r{s}") for s in range(30_000)])
    config = tmp_path / "config.yaml"
    config.write_text("batch_size: 200\nworkers: 2\n")
    out = tmp_path / "out"
    started: list[psutil.Process] = []

    def start() -> tuple[subprocess.Popen, list[psutil.Process]]:
        args = ["curate", "--input", str(partition), "--output", str(out), "--config", str(config)]
        proc = subprocess.Popen(
            [str(MODELYARD), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        parent = psutil.Process(proc.pid)
        started.append(parent)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            children = parent.children(recursive=True)
            workers = [c for c in children if "spawn_main" in " ".join(_cmdline(c))]
            if len(workers) >= 2 and _scratch(out):
                started.extend(children)
                time.sleep(1.0)  # into the run: batches in flight
                return proc, children
            time.sleep(0.1)
        raise AssertionError("the workers never started")

    yield start, out
    for process in started:  # never leave a process behind, whatever the test found
        if process.is_running():
            process.kill()


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _scratch(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.*"))


def test_sigkill_takes_the_workers_along_and_the_next_run_removes_its_scratch(
    busy_run, store: Settings, tmp_path: Path
) -> None:
    start, out = busy_run
    proc, children = start()
    stale = _scratch(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, [_cmdline(c) for c in alive]
    assert stale and all(p.exists() for p in stale)  # nobody could clean up on SIGKILL
    assert list((Path(store.storage) / "quarantine").glob("*/.*"))

    # The next run beside it (its own workers, its own scratch, another output name) removes
    # what the dead one left.
    tiny = tmp_path / "tiny.jsonl"
    write_lines(tiny, [long_record(s, f"t{s}") for s in range(20)])
    done = subprocess.run(
        [str(MODELYARD), "curate", "--input", str(tiny), "--output", str(out) + "-next"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert _scratch(out) == []
    assert not list((Path(store.storage) / "quarantine").glob("*/.*"))  # its quarantine too
    assert json.loads(done.stdout)["counts"]["input"] == 20


def test_sigterm_cleans_up_like_a_failure_and_keeps_the_previous_output(
    busy_run, tmp_path: Path
) -> None:
    start, out = busy_run
    tiny = tmp_path / "tiny.jsonl"
    write_lines(tiny, [long_record(s, f"t{s}") for s in range(20)])
    first = subprocess.run(
        [str(MODELYARD), "curate", "--input", str(tiny), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr
    before = (out / "manifest.json").read_bytes()

    proc, children = start()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    errors = stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("modelyard: error: terminated by SIGTERM")
    _, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, [_cmdline(c) for c in alive]
    assert _scratch(out) == []
    assert (out / "manifest.json").read_bytes() == before  # the previous good output stands
