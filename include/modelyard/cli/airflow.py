"""``modelyard airflow ARGS...`` and ``modelyard backfill --from DATE --to DATE``."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import NoReturn


def _settings():
    from modelyard.settings import get_settings

    return get_settings()


def _airflow(args: argparse.Namespace) -> NoReturn:
    from modelyard.airflow_env import exec_airflow

    exec_airflow(_settings(), args.args)  # replaces this process: airflow's exit code is ours


def _backfill(args: argparse.Namespace) -> int:
    from modelyard.airflow_api import AirflowAPIError
    from modelyard.backfill import NoScheduler, run_backfill

    try:
        outcomes = run_backfill(
            _settings(),
            args.start,
            args.end,
            start_airflow=args.start_airflow,
            out=lambda line: print(line, flush=True),
        )
    except (NoScheduler, AirflowAPIError) as exc:
        print(f"modelyard: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "modelyard: stopped following; the backfill stays in Airflow and goes on while its "
            "scheduler runs (the DAG's Backfills tab)",
            file=sys.stderr,
        )
        return 130
    return 0 if all(o.ok for o in outcomes) else 1


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def register(sub: argparse._SubParsersAction) -> None:
    airflow = sub.add_parser(
        "airflow",
        help="the Airflow CLI on the project's embedded environment (same as `make airflow`)",
        description="Runs `airflow ARGS...` with the embedded home's environment (AIRFLOW_HOME, "
        "DAGs, plugins, metadata DB under MODELYARD_HOME); its exit code is passed through. "
        "`modelyard airflow standalone` is `make airflow`.",
    )
    airflow.add_argument("args", nargs=argparse.REMAINDER, help="arguments for `airflow`")
    airflow.set_defaults(func=_airflow)

    backfill = sub.add_parser(
        "backfill",
        help="re-curate a date range: a real Airflow backfill of curate_dataset",
        description="Creates an Airflow backfill of curate_dataset over [--from, --to] (one run "
        "at a time, in date order; dates that already ran are run again), unpausing the DAG, and "
        "prints per date the published version and whether it is new or unchanged, or that the "
        "day has no raw partition. It needs the Airflow scheduler running on this home "
        "(`make airflow` in another terminal); without one it stops with that hint, unless "
        "--start-airflow asks it to run one (airflow standalone) for the duration.",
    )
    backfill.add_argument("--from", dest="start", type=_day, required=True, help="YYYY-MM-DD")
    backfill.add_argument("--to", dest="end", type=_day, required=True, help="YYYY-MM-DD")
    backfill.add_argument(
        "--start-airflow",
        action="store_true",
        help="no scheduler running? start `airflow standalone` for the backfill, stop it after",
    )
    backfill.set_defaults(func=_backfill)
