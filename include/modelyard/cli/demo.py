"""``modelyard demo``: the whole pipeline end to end on the embedded default."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run curate -> finetune -> promote through Airflow")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="training steps (default: settings)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from modelyard.demo import run_demo

    after = run_demo(max_steps=args.max_steps)
    return 0 if after.get("versions") else 1
