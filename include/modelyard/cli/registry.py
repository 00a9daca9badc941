"""``modelyard registry status``, ``modelyard promote`` and ``modelyard rollback``."""

from __future__ import annotations

import argparse
import getpass
import json


def _settings():
    from modelyard.settings import get_settings

    return get_settings()


def _status(args: argparse.Namespace) -> int:
    from modelyard.registry import format_status, status

    state = status(_settings())
    print(json.dumps(state, indent=2) if args.json else format_status(state))
    return 0


def _promote(args: argparse.Namespace) -> int:
    from modelyard.registry import promote

    print(
        json.dumps(
            promote(
                _settings(), to=args.to, actor=args.actor, reason=args.reason, version=args.version
            )
        )
    )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from modelyard.registry import rollback

    print(json.dumps(rollback(_settings(), actor=args.actor, reason=args.reason)))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    registry = subparsers.add_parser("registry", help="the registered model and its versions")
    sub = registry.add_subparsers(dest="registry_command", required=True)
    status = sub.add_parser("status", help="aliases, versions with lineage and scores, ledger")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)

    promote = subparsers.add_parser("promote", help="staging -> canary, or canary -> production")
    promote.add_argument("--to", required=True, choices=["canary", "production"])
    promote.add_argument("--version", help="version number (default: the one in the stage below)")
    promote.add_argument("--reason", default="manual promotion")
    promote.add_argument("--actor", default=getpass.getuser())
    promote.set_defaults(func=_promote)

    rollback = subparsers.add_parser("rollback", help="production back to the last known good")
    rollback.add_argument("--reason", default="manual rollback")
    rollback.add_argument("--actor", default=getpass.getuser())
    rollback.set_defaults(func=_rollback)
