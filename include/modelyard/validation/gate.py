"""The Great Expectations gate a curated dataset must pass before it is published.

GX runs in-process (an ephemeral context and a pandas datasource: the GX Airflow provider
cannot be installed next to Airflow 3.3). The suites check the contract itself, so a staging
dir that bypassed or broke the curation code still fails: schema, nulls, lengths,
uniqueness, no PII left, split ratio and zero train/eval overlap.

Memory stays bounded whatever the dataset size: the per-record suite validates the records
in batches of ``gate_batch_rows`` (one GX batch each), and the dataset-wide checks
(uniqueness, overlap, split ratio) run on a compact frame of 64-bit hashes, about 25 bytes a
record. Every batch's result (JSON) and the Data Docs (HTML) are stored under
``<staging>/gx/`` and summarised into the manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd

from modelyard.curation import pii
from modelyard.curation.storage import read_json, write_json
from modelyard.settings import CurationSettings

RECORD_COLUMNS = ["id", "messages", "prompt", "completion", "source", "quality_score", "split"]
ROW_COLUMNS = [*RECORD_COLUMNS, "last_role", "matches_messages", "pii_left"]
# Types GX checks with its own regex engine; cards and phones need the Luhn-aware detector
# (``pii_left``), since digit runs that fail the Luhn check are deliberately kept.
NATIVE_PII = ("SECRET", "EMAIL", "IP_ADDRESS")


class GateFailed(ValueError):
    """The curated dataset broke an expectation; the message names each one."""


def _text(messages: object) -> str:
    if not isinstance(messages, list):
        return ""
    return "\n".join(m.get("content", "") for m in messages if isinstance(m, dict))


def _hashes(values: list[str]) -> np.ndarray:
    digests = b"".join(hashlib.blake2b(v.encode(), digest_size=8).digest() for v in values)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def record_batches(staging: Path, rows: int) -> Iterator[list[dict]]:
    """Train then eval records, ``rows`` at a time."""
    decode = msgspec.json.Decoder().decode
    for name in ("train", "eval"):
        batch: list[dict] = []
        with (staging / f"{name}.jsonl").open("rb") as handle:
            for line in handle:
                batch.append(decode(line))
                if len(batch) == rows:
                    yield batch
                    batch = []
        if batch:
            yield batch


def row_frame(records: list[dict]) -> pd.DataFrame:
    """A batch of records plus the per-record columns the suite needs derived."""
    frame = pd.DataFrame(records)
    for column in RECORD_COLUMNS:
        if column not in frame:
            frame[column] = None
    texts = [_text(ms) for ms in frame["messages"]]
    frame["matches_messages"] = [
        isinstance(ms, list)
        and bool(ms)
        and c == ms[-1].get("content")
        and p == "\n".join(m.get("content", "") for m in ms[:-1] if m.get("role") == "user")
        for ms, p, c in zip(frame["messages"], frame["prompt"], frame["completion"], strict=True)
    ]
    frame["last_role"] = frame["messages"].map(
        lambda ms: ms[-1].get("role") if isinstance(ms, list) and ms else None
    )
    every_field = [
        f"{t}\n{p or ''}\n{c or ''}"
        for t, p, c in zip(texts, frame["prompt"], frame["completion"], strict=True)
    ]
    frame["pii_left"] = [",".join(sorted(set(kinds))) for kinds in pii.find_batch(every_field)]
    frame["messages"] = frame["messages"].map(json.dumps)
    frame["source"] = frame["source"].map(json.dumps)
    return frame


def hash_frame(id_hash: np.ndarray, text_hash: np.ndarray, is_eval: np.ndarray) -> pd.DataFrame:
    """The dataset-wide columns: one 64-bit hash of each id and text, and the side."""
    overlap = ~is_eval & np.isin(text_hash, text_hash[is_eval])
    return pd.DataFrame(
        {
            "id_hash": id_hash,
            "text_hash": text_hash,
            "is_eval": is_eval.astype(float),
            "train_eval_overlap": overlap,
        }
    )


def record_expectations(settings: CurationSettings) -> list:
    import great_expectations.expectations as gxe

    native = [pii.PATTERNS[kind] for kind in NATIVE_PII]
    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=ROW_COLUMNS, exact_match=True),
        *(
            gxe.ExpectColumnValuesToNotBeNull(column=c)
            for c in ("id", "messages", "prompt", "completion", "source", "split")
        ),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "eval"]),
        gxe.ExpectColumnValuesToBeInSet(column="last_role", value_set=["assistant"]),
        gxe.ExpectColumnValuesToBeInSet(column="matches_messages", value_set=[True]),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="prompt",
            min_value=settings.min_prompt_chars,
            max_value=settings.max_record_chars,
        ),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="completion",
            min_value=settings.min_completion_chars,
            max_value=settings.max_record_chars,
        ),
        gxe.ExpectColumnValuesToBeInSet(column="pii_left", value_set=[""]),
        *(
            gxe.ExpectColumnValuesToNotMatchRegexList(column=c, regex_list=native)
            for c in ("prompt", "completion")
        ),
    ]


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


class _Suites:
    """An ephemeral GX context with a pandas asset, the two suites and their checkpoints;
    every run is stored and rendered into the Data Docs site under ``docs``."""

    def __init__(self, docs: Path) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx

        self.gx = gx
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
        return self.context.checkpoints.add(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                result_format={"result_format": "SUMMARY"},
            )
        )


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _validate(checkpoint, frame: pd.DataFrame) -> dict:
    result = checkpoint.run(batch_parameters={"dataframe": frame}).run_results.values()
    return next(iter(result)).to_json_dict()


def run_gate(staging: Path, settings: CurationSettings) -> dict:
    """Validate ``staging``; store ``gx/result.json`` and Data Docs; return the summary.

    The summary is also written into the staging manifest (``gx``), so the published version
    carries its own gate result. Raises GateFailed after storing everything.
    """
    staging = staging.resolve()  # GX's Data Docs store needs an absolute base directory
    out = staging / "gx"
    suites = _Suites(out / "docs")
    per_record = record_expectations(settings)
    records = suites.checkpoint("curated_records", per_record)
    validations, id_hash, text_hash, is_eval = [], [], [], []
    for batch in record_batches(staging, settings.gate_batch_rows):
        frame = row_frame(batch)
        validations.append(_validate(records, frame))
        id_hash.append(_hashes([str(i) for i in frame["id"]]))
        text_hash.append(_hashes([_text(r.get("messages")) for r in batch]))
        is_eval.append((frame["split"] == "eval").to_numpy())
    rows = sum(map(len, id_hash))
    whole = dataset_expectations(settings, rows)
    dataset = suites.checkpoint("curated_dataset", whole)
    hashes = (_concat(id_hash, np.uint64), _concat(text_hash, np.uint64), _concat(is_eval, bool))
    validations.append(_validate(dataset, hash_frame(*hashes)))
    success = all(v["success"] for v in validations)
    out.mkdir(exist_ok=True)
    detail = {"success": success, "rows": rows, "validations": validations}
    (out / "result.json").write_text(json.dumps(detail, indent=2) + "\n", encoding="utf-8")
    failed = _failures([r for v in validations for r in v["results"]])
    summary = {
        "success": success,
        "evaluated": len(per_record) + len(whole),
        "batches": len(validations) - 1,
        "failed": failed,
        "result": "gx/result.json",
        "data_docs": "gx/docs/index.html",
    }
    manifest = read_json(staging / "manifest.json")
    manifest["gx"] = summary
    write_json(staging / "manifest.json", manifest)
    if failed:
        raise GateFailed(f"validation gate failed for {staging}: " + "; ".join(failed))
    return summary
