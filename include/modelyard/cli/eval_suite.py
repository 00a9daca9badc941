"""``modelyard eval-suite``: freeze a new eval-suite version deliberately, with a reason."""

from __future__ import annotations

import argparse
import json


def _freeze(args: argparse.Namespace) -> int:
    from modelyard.evaluation.suite import freeze_suite
    from modelyard.settings import get_settings

    suite = freeze_suite(get_settings(), args.reason)
    print(
        json.dumps(
            {
                "version": suite.version,
                "records": suite.meta["record_count"],
                "reason": suite.meta["reason"],
                "parent": suite.meta["parent"],
            }
        )
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval-suite", help="pinned eval suites")
    sub = parser.add_subparsers(dest="eval_suite_command", required=True)
    freeze = sub.add_parser(
        "freeze", help="freeze a new suite from every published held-out split and make it current"
    )
    freeze.add_argument("--reason", required=True, help="why the suite changes (recorded)")
    freeze.set_defaults(func=_freeze)
