"""The ``modelyard`` command. Each stage registers its own subcommands from its module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from modelyard.cli import airflow, curate, demo, eval_suite, registry, serve
from modelyard.settings import one_line

COMMANDS = (demo, curate, registry, eval_suite, airflow, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelyard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:  # a ValueError too, but many lines: say the first one
        print(f"modelyard: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # OSError: not found, no permission, name too long...
        print(f"modelyard: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("modelyard: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
