"""``make demo``: the whole pipeline, end to end, through Airflow on the embedded default.

Builds the tiny base model, writes three historical raw partitions, curates them with a real
Airflow backfill of ``curate_dataset`` (``modelyard backfill``'s code, under a scheduler: the
Airflow already running on this home, else one started for the backfill), then runs
``finetune_model`` and ``promote_model`` with ``airflow dags test`` (real DagRuns, XComs and
Params in the metadata DB) and prints the registry. It ends with a short canary: a challenger
through the gate into canary, ``modelyard serve`` with simulated users rating its answers, and
``canary_analysis`` through Airflow deciding from the request log. The dates are held by
backfill runs, so a later ``modelyard backfill`` over them re-runs them and reports
"unchanged". Safe to run again: curation republishes the same versions, an already-registered
(dataset, settings) pair is not retrained, and the summary says what changed (each run adds one
challenger version for its canary).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from modelyard.airflow_env import airflow_env
from modelyard.backfill import run_backfill
from modelyard.sampledata import write_sample_partitions
from modelyard.settings import Settings, get_settings
from modelyard.tasks.catalog import latest_version
from modelyard.tinymodel import build_tiny_model

DEMO_END = date(2026, 11, 3)  # fixed dates: the demo is reproducible whatever today is
DEMO_DAYS = 3


def _status(settings: Settings) -> dict:
    from modelyard.registry import status
    from modelyard.registry.connection import StoreMissing

    try:
        return status(settings)
    except StoreMissing:  # a first run: nothing registered yet
        return {}


#: Prefix of the lines the ``dags test`` process prints for the demo's own output.
_PROGRESS = "modelyard-demo: "


def _dag_run(dag_id: str, conf: dict | None = None, logical_date: str | None = None) -> list[str]:
    """The ``airflow`` arguments of one ``dags test`` run."""
    args = ["dags", "test", dag_id, *([logical_date] if logical_date else [])]
    return args + ["--conf", json.dumps(conf)] if conf else args


def _dags_test(
    settings: Settings, runs: list[list[str]], if_staged: list[list[str]] | None = None
) -> None:
    """``airflow dags test`` for each of ``runs`` in order, then for each of ``if_staged`` when
    a version holds staging after them, all in ONE Airflow process: every ``airflow`` start-up
    costs ~10-15 s (imports, the DAG bundle, the in-process execution API) and the demo runs
    several in a row. Real DagRuns, as from the CLI; their (long) log goes to a file, their
    verdicts to stdout."""
    log_dir = Path(settings.home) / "logs" / "demo"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{runs[0][2]}-{len(list(log_dir.iterdir()))}.log"
    plan = json.dumps({"runs": runs, "if_staged": if_staged or []})
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelyard.demo", plan],
        env=airflow_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    tail: list[str] = []
    with log.open("w") as out:
        for line in proc.stdout:
            out.write(line)
            tail = [*tail[-39:], line.rstrip("\n")]
            if line.startswith(_PROGRESS):
                print(line[len(_PROGRESS) :].rstrip("\n"), flush=True)
    if proc.wait() != 0:
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"airflow dags test failed (exit {proc.returncode}); full log: {log}")
    print(f"    ok (log: {log})", flush=True)


def _dags_test_main(plan: dict) -> None:
    """The ``dags test`` process: what the ``airflow`` entry point does, once per run."""
    from airflow.cli import cli_parser
    from airflow.configuration import write_default_airflow_configuration_if_needed

    write_default_airflow_configuration_if_needed()
    parser = cli_parser.get_parser()
    runs = plan["runs"]
    for n, args in enumerate(runs + plan["if_staged"]):
        if n == len(runs) and not _status(get_settings()).get("aliases", {}).get("staging"):
            print(f"{_PROGRESS}    no version holds staging: nothing to promote", flush=True)
            return
        print(f"{_PROGRESS}==> airflow {' '.join(args)}", flush=True)
        parsed = parser.parse_args(args)
        parsed.func(parsed)


def what_changed(before: dict, after: dict) -> list[str]:
    """Human-readable differences between two registry snapshots."""
    old_versions = {v["version"] for v in before.get("versions", [])}
    changes = [
        f"new version {v['version']} (gate: {v.get('gate_decision', '?')})"
        for v in after.get("versions", [])
        if v["version"] not in old_versions
    ]
    for alias, version in sorted(after.get("aliases", {}).items()):
        previous = before.get("aliases", {}).get(alias)
        if previous != version:
            changes.append(f"alias {alias}: {previous or '-'} -> {version}")
    return changes or ["nothing changed: the registry already held this pipeline's result"]


def run_demo(
    settings: Settings | None = None, max_steps: int | None = None, canary: bool = True
) -> dict:
    settings = settings or get_settings()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep the story legible
    print(f"modelyard demo: home {settings.home}", flush=True)
    build_tiny_model(settings.default_base_model)
    raw_root = settings.storage_path / "raw"
    partitions = write_sample_partitions(raw_root, DEMO_END, days=DEMO_DAYS)
    print(f"raw partitions: {', '.join(p.parent.name for p in partitions)}", flush=True)
    # No `init_airflow` here: the Airflow the backfill runs on (already running, or started
    # for it) migrated this home and created the `gpu` pool.
    before = _status(settings)

    days = sorted(date.fromisoformat(p.parent.name) for p in partitions)
    print(f"==> modelyard backfill --from {days[0]} --to {days[-1]}", flush=True)
    outcomes = run_backfill(
        settings, days[0], days[-1], start_airflow=True, out=lambda line: print(f"    {line}")
    )
    if failed := [o.line() for o in outcomes if not o.ok]:
        raise SystemExit("curation did not complete: " + "; ".join(failed))

    from modelyard.registry import find_versions

    dataset_version = latest_version(settings)
    if find_versions(settings, dataset_version=dataset_version):
        print(f"\n{dataset_version} is already trained and registered: not retraining", flush=True)
    else:
        conf = {"dataset_version": dataset_version}
        if max_steps is not None:
            conf["max_steps"] = max_steps
        _dags_test(
            settings,
            [_dag_run("finetune_model", conf)],
            if_staged=[
                _dag_run("promote_model", {"to": stage, "reason": "demo"})
                for stage in ("canary", "production")
            ],
        )

    after = _status(settings)
    print("\n==> registry (modelyard registry status)", flush=True)
    from modelyard.registry import format_status

    print(format_status(after))
    print("\n==> what changed in this run")
    for line in what_changed(before, after):
        print(f"  - {line}")
    if canary:
        decision = run_canary_demo(settings)
        harvest = run_harvest_demo(settings)
        print_generation_story(settings, decision, harvest)
    return after


# ---- the canary: live traffic through the gateway, decided by canary_analysis ----

#: A short canary: no bake time to sit out, and 20 samples per arm (ratings: 15) are enough
#: data for the demo's ~80 requests; production settings keep their larger defaults.
DEMO_CANARY_ENV = {
    "MODELYARD_CANARY__BAKE_MINUTES": "0",
    **{
        f"MODELYARD_CANARY__METRICS__{metric}__MIN_SAMPLES": "20"
        for metric in ("ERROR_RATE", "FORMAT_VALIDITY", "LATENCY")
    },
    "MODELYARD_CANARY__METRICS__THUMBS_UP__MIN_SAMPLES": "15",
}
DEMO_REQUESTS = 80


@contextmanager
def _environment(extra: dict[str, str]) -> Iterator[None]:
    """Settings for the child processes this demo starts (gateway, ``airflow dags test``)."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _challenger(settings: Settings, production: str) -> str:
    """A second candidate without a second training run (the demo stays short): production's
    adapter, through the real gate again, registered as a new version and moved to canary by
    ``auto_canary``'s code, as a freshly trained version that passed the gate would be."""
    from mlflow.models import Model

    from modelyard.canary.auto import auto_canary
    from modelyard.evaluation import evaluate_candidate
    from modelyard.registry import register_candidate, tags
    from modelyard.registry.artifacts import FLAVOR, client_for, local_model_dir
    from modelyard.storage import storage_path
    from modelyard.tasks.catalog import load_manifest

    client = client_for(settings)
    mv = client.get_model_version(settings.registered_model, production)
    local = local_model_dir(settings, production)
    flavor = Model.load(str(local / "MLmodel")).flavors[FLAVOR]
    run = client.create_run(
        client.get_run(mv.run_id).info.experiment_id, run_name="demo-challenger"
    )
    client.set_terminated(run.info.run_id)
    trained = {
        "mlflow_run_id": run.info.run_id,
        "adapter_dir": str(local / flavor["adapter"]),
        "base_model": flavor["base_model"],
        "base_revision": flavor.get("base_revision"),
        "config_hash": mv.tags.get(tags.CONFIG_HASH, ""),
    }
    manifest = load_manifest(mv.tags[tags.DATASET_VERSION], settings)
    train_file = None
    if mv.tags.get(tags.SNAPSHOT):  # the same training data as production: its snapshot
        snapshot = mv.tags[tags.SNAPSHOT]
        versions = json.loads(mv.tags.get(tags.SNAPSHOT_VERSIONS) or "[]")
        manifest["snapshot"] = {"id": snapshot, "versions": versions}
        train_file = str(storage_path(settings, "snapshots", snapshot, "train.jsonl"))
    report = evaluate_candidate(trained, settings, manifest, train_file)
    ctx = {"dag_id": None, "run_id": None, "actor": "demo"}
    result = register_candidate(trained, report, manifest, ctx, settings)
    if not result["staging"]:
        raise SystemExit(f"the challenger failed the gate: {report['gate']['failed']}")
    auto_canary(settings, [{"version": result["version"], "staging": True}])
    return result["version"]


@contextmanager
def _gateway(settings: Settings) -> Iterator[str]:
    """``modelyard serve`` on a free loopback port until the context exits; its base URL."""
    import httpx

    from modelyard.airflow_env import VENV_BIN, free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(settings.home) / "logs" / "demo" / "gateway.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "MODELYARD_HOME": str(settings.home),
        "MODELYARD_SERVING__CANARY_SHARE": "0.5",
        "MODELYARD_SERVING__POLL_SECONDS": "1",
        # One thread: the gateway shares the cores with the simulated users (the tests' choice).
        "OMP_NUM_THREADS": "1",
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "modelyard"), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the gateway exited ({proc.returncode}); see {log}")
            try:
                health = httpx.get(f"{url}/healthz", timeout=5).json()
                if health.get("production") and health.get("canary"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the gateway did not load both versions; see {log}")
            time.sleep(0.5)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)  # flushes the request log
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_canary_demo(settings: Settings) -> dict | None:
    """Gateway up, simulated users through it, ``canary_analysis`` through Airflow, decision."""
    from modelyard.canary.decision import format_report
    from modelyard.canary.loadgen import simulate_users
    from modelyard.registry import tags
    from modelyard.registry.artifacts import client_for

    aliases = _status(settings).get("aliases", {})
    production = aliases.get("production")
    if production is None:
        print("\nno version holds production: no canary to run", flush=True)
        return None
    started = time.monotonic()
    print(
        "\n==> canary: a challenger through the gate, into canary (auto_canary); the demo "
        "re-registers production's adapter as the challenger instead of training a second one",
        flush=True,
    )
    canary = aliases.get("canary") or _challenger(settings, production)
    print(f"    canary v{canary}, production v{production}", flush=True)
    with _environment(DEMO_CANARY_ENV):
        with _gateway(settings) as url:
            print(f"==> modelyard serve on {url}; {DEMO_REQUESTS} requests", flush=True)
            load = simulate_users(
                url, settings.registered_model, requests=DEMO_REQUESTS, concurrency=2
            )
            for line in load.lines():
                print(f"    {line}", flush=True)
        _dags_test(settings, [_dag_run("canary_analysis")])
    client = client_for(settings)
    summary = client.get_model_version(settings.registered_model, canary).tags.get(
        tags.CANARY_ANALYSIS
    )
    if summary is None:
        raise SystemExit("canary_analysis recorded no analysis")
    from mlflow.artifacts import download_artifacts

    report = json.loads(Path(download_artifacts(json.loads(summary)["report"])).read_text())
    print("\n==> canary decision", flush=True)
    print(format_report(report), flush=True)
    print(f"    (canary demo took {time.monotonic() - started:.0f} s)", flush=True)
    return report


# ---- the loop closes: today's feedback becomes the next generation's data ----


def run_harvest_demo(settings: Settings) -> dict | None:
    """``harvest_feedback`` for today (UTC) through Airflow: the canary's rated answers become
    ``raw/<today>/feedback-*.jsonl``, which the next ``curate_dataset`` run for today curates
    (scrubbed, deduplicated, checked for eval-suite contamination) into the next generation."""
    from datetime import UTC, datetime, timedelta

    from modelyard.feedback.harvest import report_path
    from modelyard.storage import read_json

    day = datetime.now(UTC).date()
    today = day.isoformat()
    print(f"\n==> harvest_feedback for {today}: the canary's rated answers", flush=True)
    # `dags test` runs the interval that ends at the date it is given: [today, tomorrow).
    tomorrow = (day + timedelta(days=1)).isoformat()
    _dags_test(settings, [_dag_run("harvest_feedback", logical_date=tomorrow)])
    report = report_path(settings, today)
    return read_json(report) if report.exists() else None


def print_generation_story(settings: Settings, decision: dict | None, harvest: dict | None) -> None:
    """Which dataset, which gate, which canary decision, which feedback: one generation."""
    state = _status(settings)
    if not state.get("versions"):
        return
    production = state["aliases"].get("production")
    version = next(v for v in state["versions"] if v["version"] == production)
    from modelyard.registry import tags

    lineage = version["lineage"]
    print("\n==> the generation story", flush=True)
    print(
        f"  dataset   v{production} trained on snapshot {lineage.get(tags.SNAPSHOT) or '-'}"
        f" (newest version {version['dataset_version']}), eval suite {version['suite_version']}",
        flush=True,
    )
    versus = version.get("compared_with") or {}
    print(
        f"  gate      {version['gate_decision']} against {versus.get('label', '?')}: "
        + ", ".join(f"{k} {v:.3f}" for k, v in sorted(version["metrics"].items())),
        flush=True,
    )
    if decision:
        print(
            f"  canary    v{decision['canary_version']} vs v{decision['production_version']}: "
            f"{decision['decision']} ({decision['reason']})",
            flush=True,
        )
    if harvest:
        outcomes = ", ".join(f"{k} {n}" for k, n in sorted(harvest["outcomes"].items()))
        print(
            f"  feedback  {harvest['partition']}: {harvest['records']} records into "
            f"raw/{harvest['file'] or '-'} ({outcomes}); the next curate_dataset run for "
            f"{harvest['partition']} curates them into the next generation",
            flush=True,
        )


if __name__ == "__main__":
    _dags_test_main(json.loads(sys.argv[1]))
