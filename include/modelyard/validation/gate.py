"""The Great Expectations gate a curated dataset must pass before it is published.

GX runs in-process (an ephemeral context and a pandas datasource: the GX Airflow provider
cannot be installed next to Airflow 3.3). The suites check the contract itself, computed from
the files, so a staging dir that bypassed or broke the curation code still fails: the exact
record schema, roles, prompt/completion derived from the messages, lengths, quality scores,
no PII left (in kept records and in the published rejections), each record on the side its
file says, unique ids and texts, no train/eval overlap, the split ratio, and a manifest whose
counts match the files and whose measured ``leaked_to_train`` is 0.

Expectations run on compact columns derived from each record (lengths, flags, the kinds of
PII found, 64-bit hashes), never on raw text: profiled on 200k records, GX's regex
expectations over the text columns were the largest cost after the Data Docs rebuilt per
batch, and their result summaries quoted the offending text (PII) into ``result.json`` and
the Data Docs. About 80 bytes a record are held, ``gate_batch_rows`` records per GX batch;
the Data Docs are built once, at the end.
Every batch's result (JSON) and the Data Docs (HTML) are stored under ``<staging>/gx/`` and
summarised into the manifest.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelyard.records import REASONS
from modelyard.settings import CurationSettings
from modelyard.storage import read_json, write_json
from modelyard.validation.columns import columns_of, spans
from modelyard.workers import OrderedMap, Workers, workers_for

if TYPE_CHECKING:  # pandas is imported with GX, off the CLI's start-up path (cli.curate)
    import pandas as pd

SIDES = ("train", "eval")


class GateFailed(ValueError):
    """The curated dataset broke an expectation; the message names each one."""


def record_expectations(settings: CurationSettings) -> list:
    import great_expectations.expectations as gxe

    def between(column: str, low: float, high: float | None = None):
        return gxe.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high)

    def only(column: str, values: list) -> object:
        return gxe.ExpectColumnValuesToBeInSet(column=column, value_set=values)

    expectations = [
        *(only(c, [True]) for c in ("contract", "on_its_side", "roles_known", "matches_messages")),
        only("last_role", ["assistant"]),
        only("pii_left", [""]),
        between("id_chars", 1),
        between("prompt_chars", settings.min_prompt_chars, settings.max_record_chars),
        between("completion_chars", settings.min_completion_chars, settings.max_record_chars),
        between("record_chars", 0, settings.max_record_chars),
        between("source_line", 1),
        # NaN (no score) is skipped by GX; with the classifier on, every record has one.
        between(
            "quality_score", settings.quality_threshold if settings.quality_classifier else 0, 1
        ),
    ]
    if settings.quality_classifier:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column="quality_score"))
    return expectations


def rejected_expectations() -> list:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToBeInSet(column="contract", value_set=[True]),
        gxe.ExpectColumnValuesToBeInSet(column="reason", value_set=sorted(REASONS)),
        gxe.ExpectColumnValuesToBeInSet(column="pii_left", value_set=[""]),
    ]


def hash_frame(id_hash: np.ndarray, text_hash: np.ndarray, is_eval: np.ndarray) -> pd.DataFrame:
    """The dataset-wide columns: one 64-bit hash of each id and text, and the side."""
    import pandas as pd

    overlap = ~is_eval & np.isin(text_hash, text_hash[is_eval])
    return pd.DataFrame(
        {
            "id_hash": id_hash,
            "text_hash": text_hash,
            "is_eval": is_eval.astype(float),
            "train_eval_overlap": overlap,
        }
    )


def dataset_expectations(settings: CurationSettings, rows: int) -> list:
    import great_expectations.expectations as gxe

    p = settings.eval_fraction
    slack = settings.split_tolerance + 3 * math.sqrt(p * (1 - p) / max(rows, 1))
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeUnique(column="id_hash"),
        gxe.ExpectColumnValuesToBeUnique(column="text_hash"),
        gxe.ExpectColumnValuesToBeInSet(column="train_eval_overlap", value_set=[False]),
        gxe.ExpectColumnMeanToBeBetween(
            column="is_eval", min_value=max(p - slack, 0.0), max_value=min(p + slack, 1.0)
        ),
    ]


def manifest_frame(manifest: dict, lines: dict[str, int]) -> pd.DataFrame:
    """One row: whether the manifest's counts are the files' and add up, and its measured
    count of training records overlapping held-out data."""
    import pandas as pd

    counts = manifest.get("counts") or {}
    leaked = (manifest.get("contamination") or {}).get("leaked_to_train")
    return pd.DataFrame(
        {
            "counts_match_files": [all(counts.get(n) == lines[n] for n in lines)],
            "counts_add_up": [counts.get("input") == sum(lines.values())],
            "leaked_to_train": [leaked if isinstance(leaked, int) else -1],
        }
    )


def manifest_expectations() -> list:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToBeInSet(column="counts_match_files", value_set=[True]),
        gxe.ExpectColumnValuesToBeInSet(column="counts_add_up", value_set=[True]),
        gxe.ExpectColumnValuesToBeInSet(column="leaked_to_train", value_set=[0]),
    ]


def _failures(results: list[dict]) -> list[str]:
    """Each failed expectation once, its unexpected counts summed over the batches."""
    unexpected: dict[str, int] = {}
    for result in results:
        if result["success"]:
            continue
        config = result["expectation_config"]
        column = config["kwargs"].get("column")
        name = config["type"] + (f"({column})" if column else "")
        count = result.get("result", {}).get("unexpected_count") or 0
        unexpected[name] = unexpected.get(name, 0) + count
    return [name + (f": {n} unexpected" if n else "") for name, n in unexpected.items()]


def import_gx():
    """Great Expectations, with its usage analytics off (read when it is first imported)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations

    return great_expectations


class _Suites:
    """An ephemeral GX context with a pandas asset and one checkpoint a suite; every run is
    stored, and ``build_docs`` renders them all into the Data Docs site under ``docs``."""

    def __init__(self, docs: Path) -> None:
        gx = self.gx = import_gx()
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = {"globally": False}
        self.context.add_data_docs_site(
            site_name="local",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        asset = self.context.data_sources.add_pandas("curated").add_dataframe_asset("records")
        self.batch = asset.add_batch_definition_whole_dataframe("batch")

    def checkpoint(self, name: str, expectations: list):
        gx = self.gx
        suite = self.context.suites.add(gx.ExpectationSuite(name=name))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=self.batch, suite=suite)
        )
        # No UpdateDataDocsAction: rebuilding the site after every batch was half the gate.
        return self.context.checkpoints.add(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                result_format={"result_format": "SUMMARY"},
            )
        )

    def build_docs(self) -> None:
        # Ours only: an ephemeral context also has a default site in a temp dir, which a
        # bare build_data_docs() renders a second time and leaves behind in /tmp.
        self.context.build_data_docs(site_names=["local"])


def _validate(checkpoint, frame: pd.DataFrame) -> dict:
    result = checkpoint.run(batch_parameters={"dataframe": frame}).run_results.values()
    return next(iter(result)).to_json_dict()


def _concat(parts: list, dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


_SPAN_BYTES = 8 << 20  # a gate job: ~10k records in, ~1 MB of columns out


@contextmanager
def _columns(
    staging: Path, settings: CurationSettings, workers: Workers | None
) -> Iterator[Iterator[tuple[str, dict]]]:
    """(file kind, columns) of every ``_SPAN_BYTES`` of train, eval and rejected, in order.

    With more than a few spans of work, they are computed by worker processes, and the
    first ones are under way on entering: the caller imports GX (~3 CPU-s) meanwhile, so
    the two largest costs of the gate share the cores."""
    jobs = [
        (str(staging / f"{kind}.jsonl"), start, end, kind)
        for kind in (*SIDES, "rejected")
        for start, end in spans(staging / f"{kind}.jsonl", _SPAN_BYTES)
    ]
    with workers_for(workers, settings.workers) as run:
        pool = run.pool() if len(jobs) > 3 else None
        results = OrderedMap(pool, columns_of, jobs, 2 * settings.workers + 1)
        yield ((job[3], columns) for job, columns in zip(jobs, results, strict=True))


def _frames(
    columns: Iterator[tuple[str, dict]], rows: int, collected: dict
) -> Iterator[tuple[str, pd.DataFrame]]:
    """(file kind, frame) of up to ``rows`` records or rejections of one kind; the hashes,
    sides and line counts of every record are collected into ``collected`` for the
    dataset-wide suite."""
    import pandas as pd

    pending: list[pd.DataFrame] = []
    pending_kind = None
    for kind, part in columns:
        collected["lines"][kind] += len(part["pii_left"])
        if kind != "rejected":
            for key in ("id_hash", "text_hash"):
                collected[key].append(part.pop(key))
            collected["is_eval"].append(np.full(len(part["pii_left"]), kind == "eval"))
        if pending and (kind != pending_kind or sum(map(len, pending)) >= rows):
            yield pending_kind, pd.concat(pending, ignore_index=True)
            pending = []
        pending.append(pd.DataFrame(part))
        pending_kind = kind
    if pending:
        yield pending_kind, pd.concat(pending, ignore_index=True)


def run_gate(staging: Path, settings: CurationSettings, workers: Workers | None = None) -> dict:
    """Validate ``staging``; store ``gx/result.json`` and Data Docs; return the summary.

    The summary is also written into the staging manifest (``gx``), so the published version
    carries its own gate result. Raises GateFailed after storing everything. ``workers``
    reuses the worker processes of an earlier stage.
    """
    staging = staging.resolve()  # GX's Data Docs store needs an absolute base directory
    out = staging / "gx"
    manifest = read_json(staging / "manifest.json")
    collected: dict = {"id_hash": [], "text_hash": [], "is_eval": [], "lines": Counter()}
    validations = []
    with _columns(staging, settings, workers) as columns:
        suites = _Suites(out / "docs")
        expectations = {
            "curated_records": record_expectations(settings),
            "curated_rejections": rejected_expectations(),
            "curated_manifest": manifest_expectations(),
        }
        checkpoints = {name: suites.checkpoint(name, e) for name, e in expectations.items()}
        for kind, frame in _frames(columns, settings.gate_batch_rows, collected):
            suite = "curated_rejections" if kind == "rejected" else "curated_records"
            validations.append(_validate(checkpoints[suite], frame))
    batches = len(validations)
    lines = {name: collected["lines"][name] for name in (*SIDES, "rejected")}
    rows = lines["train"] + lines["eval"]
    expectations["curated_dataset"] = dataset_expectations(settings, rows)
    dataset = suites.checkpoint("curated_dataset", expectations["curated_dataset"])
    hashes = hash_frame(
        _concat(collected["id_hash"], np.uint64),
        _concat(collected["text_hash"], np.uint64),
        _concat(collected["is_eval"], bool),
    )
    validations.append(_validate(dataset, hashes))
    validations.append(_validate(checkpoints["curated_manifest"], manifest_frame(manifest, lines)))
    suites.build_docs()
    success = all(v["success"] for v in validations)
    out.mkdir(exist_ok=True)
    detail = {"success": success, "rows": rows, "validations": validations}
    (out / "result.json").write_text(json.dumps(detail, indent=2) + "\n", encoding="utf-8")
    failed = _failures([r for v in validations for r in v["results"]])
    summary = {
        "success": success,
        "evaluated": sum(map(len, expectations.values())),
        "batches": batches,
        "failed": failed,
        "result": "gx/result.json",
        "data_docs": "gx/docs/index.html",
    }
    manifest["gx"] = summary
    write_json(staging / "manifest.json", manifest)
    if failed:
        raise GateFailed(f"validation gate failed for {staging}: " + "; ".join(failed))
    return summary
