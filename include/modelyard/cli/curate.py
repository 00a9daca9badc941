"""``modelyard curate``: the curation the DAG runs, on any file or partition dir.

Imports of the curation and validation stacks (numpy, Arrow, pandas, Great Expectations)
happen inside ``run``, so other ``modelyard`` commands do not pay for them.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _path(text: str) -> Path:
    """A path argument; an empty one (an unset shell variable) would mean the cwd."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (an unset variable?)")
    return Path(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "curate",
        help="curate a raw partition into train/eval/rejected + manifest, then run the GX gate",
    )
    parser.add_argument(
        "--input", required=True, type=_path, help="partition dir or .jsonl[.gz] file"
    )
    parser.add_argument(
        "--output",
        required=True,
        type=_path,
        help="output dir: new, empty, or an earlier curation output (replaced); never inside "
        "or around the input",
    )
    parser.add_argument(
        "--eval-reference",
        type=_path,
        help="eval-suite records (jsonl, any shape curation accepts, each with an id)",
    )
    parser.add_argument("--config", type=_path, help="JSON/YAML file of CurationSettings overrides")
    parser.set_defaults(func=run)


def _problems(exc) -> str:
    """A pydantic ValidationError as one line: ``field: message; ...``."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())


def _unique_key_loader():
    """A safe YAML loader that refuses a key given twice (plain YAML keeps the last one, so
    one of the two settings would be ignored without a word); merge keys still override."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            own = [
                self.construct_object(key, deep=deep)
                for key, _ in node.value
                if key.tag != "tag:yaml.org,2002:merge"
            ]
            twice = sorted({str(key) for key in own if own.count(key) > 1})
            if twice:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key given twice: {', '.join(twice)}", node.start_mark
                )
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def settings_with(config: Path | None):
    """The settings, with the curation overrides of ``config`` applied and validated."""
    import yaml  # JSON is a subset of YAML: one loader for both
    from pydantic import ValidationError

    from modelyard.settings import CurationSettings, get_settings

    try:
        settings = get_settings()
    except ValidationError as exc:
        raise ValueError(f"invalid MODELYARD_* settings: {_problems(exc)}") from None
    if config is None:
        return settings
    if not config.exists():
        raise FileNotFoundError(f"config file not found: {config}")
    if config.is_dir():
        raise ValueError(f"invalid config {config}: a directory, not a file")
    try:  # a pipe (`--config <(...)`) reads as well as a file
        overrides = yaml.load(config.read_text(encoding="utf-8"), Loader=_unique_key_loader())
    except UnicodeDecodeError:
        raise ValueError(f"invalid config {config}: not UTF-8 text") from None
    except RecursionError:
        raise ValueError(f"invalid config {config}: nested too deeply") from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise ValueError(f"invalid config {config}: not YAML/JSON: {problem}") from None
    if overrides is None:
        return settings
    if not isinstance(overrides, dict):
        raise ValueError(
            f"invalid config {config}: expected a mapping of CurationSettings fields, "
            f"got {type(overrides).__name__}"
        )
    try:
        curation = CurationSettings.model_validate({**settings.curation.model_dump(), **overrides})
    except ValidationError as exc:
        raise ValueError(f"invalid config {config}: {_problems(exc)}") from None
    return settings.model_copy(update={"curation": curation})


def partition_of(source: Path) -> str | None:
    """The partition date a path belongs to (``raw/YYYY-MM-DD[/file]``): enables the
    cross-version dedup against versions published for earlier dates."""
    for name in (source.name, source.parent.name):
        if _DATE.fullmatch(name):
            return name
    return None


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so every ``finally`` and cleanup runs."""


def _raise_terminated(signum: int, frame) -> None:
    raise _Terminated


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM (Python's default: die on the spot) into an exception: the scratch
    dir and the worker processes are cleaned up as on any failure."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _import_gate() -> None:
    """Import the gate (pandas, Great Expectations: ~3 CPU-s, single-threaded Python) while
    curation runs: its last pass leaves a core idle. Independent of anything curation
    decides; the gate itself still runs on the finished output.

    With the cyclic collector paused (its passes over the ~300k objects being created were
    ~15% of the import: 3.2-3.4 -> 2.7 CPU-s), then those objects, which live as long as the
    process, frozen out of every later collection."""
    from modelyard.validation import gate
    from modelyard.workers import collector_paused

    collector_paused(gate.import_gx)
    gc.freeze()


def run(args: argparse.Namespace) -> int:
    # At exit, skip the collector's walk over the objects pandas and GX leave (~300k):
    # measured 0.6 s of the process's shutdown. Memory goes back to the OS either way.
    atexit.unregister(gc.freeze)  # once, however often run() is called in one process
    atexit.register(gc.freeze)
    settings = settings_with(args.config)
    if not args.input.exists():
        raise FileNotFoundError(f"input not found: {args.input}")
    from modelyard.curation.publish import PUBLISHED_FILES
    from modelyard.curation.reader import raw_files
    from modelyard.storage import check_output

    inputs = [p for p in (args.input, args.eval_reference, args.config) if p is not None]
    output = check_output(args.output, [*inputs, *raw_files(args.input)], PUBLISHED_FILES)
    try:
        with _sigterm_unwinds():
            from modelyard.tasks.curation import curate_into
            from modelyard.workers import Workers

            threading.Thread(target=_import_gate, name="import-gate", daemon=True).start()
            with Workers(settings.curation.workers) as workers:  # one start-up for both
                start = time.perf_counter()
                partition = partition_of(args.input)
                manifest = curate_into(
                    args.input, output, settings, partition, args.eval_reference, workers
                )
                curated = time.perf_counter()
                from modelyard.validation import run_gate  # imported meanwhile by the thread

                gate = run_gate(output, settings.curation, workers)
                gated = time.perf_counter()
    except _Terminated:
        print(
            "modelyard: error: terminated by SIGTERM (scratch and workers cleaned up)",
            file=sys.stderr,
        )
        return 128 + signal.SIGTERM
    seconds = {"curate": round(curated - start, 3), "gate": round(gated - curated, 3)}
    summary = {"version": manifest["version"], "counts": manifest["counts"], "gx": gate["success"]}
    print(json.dumps({**summary, "seconds": seconds}))
    return 0
