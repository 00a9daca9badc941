"""``python -m trainer --config FILE``: exit 0 with result.json written, 2 on a bad config,
1 with one line when an export did not deliver its files."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from trainer.backends import ExportError, resolve_backend
from trainer.config import (
    CONFIG_ERROR_EXIT,
    CONFIG_ERROR_PREFIX,
    ConfigError,
    check_against_model,
    load_config,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="JSON or YAML config file")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = load_config(args.config)
        backend = resolve_backend(cfg)
        if backend == "unsloth":
            importlib.import_module("unsloth")  # must patch transformers/TRL before they load
        # Before the training stack loads (~13 s of imports on a small CPU box): a config that
        # cannot work fails in seconds, not after them.
        check_against_model(cfg)
        from trainer.train import run

        result = run(cfg, backend)
    except ConfigError as err:
        print(f"{CONFIG_ERROR_PREFIX}{err}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    except ExportError as err:
        print(f"trainer: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
