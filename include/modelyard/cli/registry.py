"""``modelyard registry status``, ``promote``, ``approve`` and ``rollback``.

The actor of every move is the OS account running the command; a person it is done for is
recorded separately (``--on-behalf-of``), never as the actor.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable


def _settings():
    from modelyard.settings import get_settings

    return get_settings()


def _one_line(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A registry refusal (store missing or unreachable, no lock, lost lease) as one line."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from modelyard.registry.connection import RegistryError

        try:
            return command(args)
        except RegistryError as exc:
            print(f"modelyard: error: {exc}", file=sys.stderr)
            return 2

    return run


@_one_line
def _status(args: argparse.Namespace) -> int:
    from modelyard.registry import format_status, status

    state = status(_settings())
    print(json.dumps(state, indent=2) if args.json else format_status(state))
    return 0


@_one_line
def _promote(args: argparse.Namespace) -> int:
    from modelyard.registry import promote
    from modelyard.registry.identity import os_user

    moved = promote(
        _settings(),
        to=args.to,
        actor=os_user(),
        reason=args.reason,
        version=args.version,
        on_behalf_of=args.on_behalf_of,
    )
    print(json.dumps(moved))
    return 0


@_one_line
def _approve(args: argparse.Namespace) -> int:
    from modelyard.registry import approve
    from modelyard.registry.identity import os_user

    approved = approve(
        _settings(),
        actor=os_user(),
        reason=args.reason,
        version=args.version,
        on_behalf_of=args.on_behalf_of,
    )
    print(json.dumps(approved))
    return 0


@_one_line
def _rollback(args: argparse.Namespace) -> int:
    from modelyard.registry import rollback
    from modelyard.registry.identity import os_user

    rolled = rollback(
        _settings(),
        actor=os_user(),
        reason=args.reason,
        on_behalf_of=args.on_behalf_of,
        from_version=args.from_version,
    )
    print(json.dumps(rolled))
    return 0


def _on_behalf_of(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--on-behalf-of",
        metavar="NAME",
        help="the person you act for (recorded as on_behalf_of; you are recorded as the actor)",
    )


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
    _on_behalf_of(promote)
    promote.set_defaults(func=_promote)

    approve = subparsers.add_parser(
        "approve",
        help="approve the version in canary for production (needed when "
        "promotion.require_human_approval is on; by someone other than who promotes it)",
    )
    approve.add_argument("--version", required=True, help="the version in canary you approve")
    approve.add_argument("--reason", required=True, help="what you checked (recorded)")
    _on_behalf_of(approve)
    approve.set_defaults(func=_approve)

    rollback = subparsers.add_parser("rollback", help="production back to the last known good")
    rollback.add_argument("--reason", default="manual rollback")
    rollback.add_argument(
        "--from-version",
        metavar="N",
        help="the version you are rolling back (as `registry status` showed it): if production "
        "already moved, e.g. a colleague rolled back the same incident, nothing changes",
    )
    _on_behalf_of(rollback)
    rollback.set_defaults(func=_rollback)
