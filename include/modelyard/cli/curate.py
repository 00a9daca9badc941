"""``modelyard curate``: the curation the DAG runs, on any file or partition dir."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from pydantic import ValidationError

from modelyard.curation.tasks import curate_into
from modelyard.settings import CurationSettings, Settings, get_settings
from modelyard.validation import run_gate

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "curate",
        help="curate a raw partition into train/eval/rejected + manifest, then run the GX gate",
    )
    parser.add_argument(
        "--input", required=True, type=Path, help="partition dir or .jsonl[.gz] file"
    )
    parser.add_argument("--output", required=True, type=Path, help="output dir (replaced)")
    parser.add_argument("--eval-reference", type=Path, help="curated eval-suite records (jsonl)")
    parser.add_argument("--config", type=Path, help="JSON/YAML file of CurationSettings overrides")
    parser.set_defaults(func=run)


def settings_with(config: Path | None) -> Settings:
    settings = get_settings()
    if config is None:
        return settings
    if not config.is_file():
        raise FileNotFoundError(f"config file not found: {config}")
    import yaml  # JSON is a subset of YAML: one loader for both

    overrides = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    try:
        curation = CurationSettings(**{**settings.curation.model_dump(), **overrides})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid config {config}: {problems}") from None
    return settings.model_copy(update={"curation": curation})


def partition_of(source: Path) -> str | None:
    """The partition date a path belongs to (``raw/YYYY-MM-DD[/file]``): enables the
    cross-version dedup against versions published for earlier dates."""
    for name in (source.name, source.parent.name):
        if _DATE.fullmatch(name):
            return name
    return None


def run(args: argparse.Namespace) -> int:
    settings = settings_with(args.config)
    if not args.input.exists():
        raise FileNotFoundError(f"input not found: {args.input}")
    manifest = curate_into(
        args.input, args.output, settings, partition_of(args.input), args.eval_reference
    )
    gate = run_gate(args.output, settings.curation)
    print(
        json.dumps(
            {"version": manifest["version"], "counts": manifest["counts"], "gx": gate["success"]}
        )
    )
    return 0
