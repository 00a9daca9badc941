"""``modelyard demo``: the whole pipeline end to end on the embedded default."""

from __future__ import annotations

import argparse


def _steps(text: str) -> int:
    """Checked here, not after the tiny model and a backfill: 0 used to mean "the default"."""
    try:
        steps = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of steps: {text!r}") from None
    if steps < 1:
        raise argparse.ArgumentTypeError(f"training needs at least 1 step, not {steps}")
    return steps


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run curate -> finetune -> promote through Airflow")
    parser.add_argument(
        "--max-steps",
        type=_steps,
        default=None,
        help="training steps, 1 or more (default: settings)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from modelyard.demo import run_demo

    after = run_demo(max_steps=args.max_steps)
    return 0 if after.get("versions") else 1
