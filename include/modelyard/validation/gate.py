"""The Great Expectations gate a curated dataset must pass before it is published.

GX runs in-process (an ephemeral context and a pandas datasource: the GX Airflow provider
cannot be installed next to Airflow 3.3). The suite checks the contract itself, so a staging
dir that bypassed or broke the curation code still fails: schema, nulls, lengths,
uniqueness, no PII left, split ratio and zero train/eval overlap. The result (JSON) and the
Data Docs (HTML) are stored under ``<staging>/gx/`` and summarised into the manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import pandas as pd

from modelyard.curation import pii
from modelyard.curation.storage import read_json, write_json
from modelyard.settings import CurationSettings

RECORD_COLUMNS = ["id", "messages", "prompt", "completion", "source", "quality_score", "split"]
DERIVED_COLUMNS = [
    "last_role",
    "matches_messages",
    "text_hash",
    "is_eval",
    "train_eval_overlap",
    "pii_left",
]
# Types GX checks with its own regex engine; cards and phones need the Luhn-aware detector
# (``pii_left``), since digit runs that fail the Luhn check are deliberately kept.
NATIVE_PII = ("SECRET", "EMAIL", "IP_ADDRESS")


class GateFailed(ValueError):
    """The curated dataset broke an expectation; the message names each one."""


def load_frame(staging: Path) -> pd.DataFrame:
    """Train and eval records as one frame, plus the columns the suite needs derived."""
    rows = []
    for name in ("train", "eval"):
        with (staging / f"{name}.jsonl").open(encoding="utf-8") as handle:
            rows += [json.loads(line) for line in handle]
    frame = pd.DataFrame(rows)
    for column in RECORD_COLUMNS:
        if column not in frame:
            frame[column] = None
    texts = frame["messages"].map(
        lambda ms: "\n".join(m.get("content", "") for m in ms) if isinstance(ms, list) else ""
    )
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
    frame["text_hash"] = texts.map(lambda t: hashlib.blake2b(t.encode(), digest_size=8).hexdigest())
    frame["is_eval"] = (frame["split"] == "eval").astype(float)
    eval_hashes = set(frame.loc[frame["split"] == "eval", "text_hash"])
    frame["train_eval_overlap"] = (frame["split"] == "train") & frame["text_hash"].isin(eval_hashes)
    every_field = texts + "\n" + frame["prompt"].fillna("") + "\n" + frame["completion"].fillna("")
    frame["pii_left"] = [
        ",".join(sorted(set(kinds))) for kinds in pii.find_batch(every_field.tolist())
    ]
    frame["messages"] = frame["messages"].map(json.dumps)
    frame["source"] = frame["source"].map(json.dumps)
    return frame


def expectations(settings: CurationSettings, rows: int) -> list:
    import great_expectations.expectations as gxe

    p = settings.eval_fraction
    slack = settings.split_tolerance + 3 * math.sqrt(p * (1 - p) / max(rows, 1))
    checks = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectTableColumnsToMatchSet(
            column_set=RECORD_COLUMNS + DERIVED_COLUMNS, exact_match=True
        ),
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
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeUnique(column="text_hash"),
        gxe.ExpectColumnValuesToBeInSet(column="train_eval_overlap", value_set=[False]),
        gxe.ExpectColumnValuesToBeInSet(column="pii_left", value_set=[""]),
        gxe.ExpectColumnMeanToBeBetween(
            column="is_eval", min_value=max(p - slack, 0.0), max_value=min(p + slack, 1.0)
        ),
    ]
    native = [pii.PATTERNS[kind] for kind in NATIVE_PII]
    checks += [
        gxe.ExpectColumnValuesToNotMatchRegexList(column=c, regex_list=native)
        for c in ("prompt", "completion")
    ]
    return checks


def _describe(result: dict) -> str:
    config = result["expectation_config"]
    column = config["kwargs"].get("column")
    unexpected = result.get("result", {}).get("unexpected_count")
    where = f"({column})" if column else ""
    return f"{config['type']}{where}" + (f": {unexpected} unexpected" if unexpected else "")


def run_gate(staging: Path, settings: CurationSettings) -> dict:
    """Validate ``staging``; store ``gx/result.json`` and Data Docs; return the summary.

    The summary is also written into the staging manifest (``gx``), so the published version
    carries its own gate result. Raises GateFailed after storing everything.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    frame = load_frame(staging)
    out = staging / "gx"
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    context.add_data_docs_site(
        site_name="local",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(out / "docs"),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    batch = context.data_sources.add_pandas("curated").add_dataframe_asset("records")
    suite = context.suites.add(gx.ExpectationSuite(name="curated_dataset"))
    for expectation in expectations(settings, len(frame)):
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(
            name="gate", data=batch.add_batch_definition_whole_dataframe("all"), suite=suite
        )
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="curation_gate",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format={"result_format": "SUMMARY"},
        )
    )
    result = next(iter(checkpoint.run(batch_parameters={"dataframe": frame}).run_results.values()))
    detail = result.to_json_dict()
    out.mkdir(exist_ok=True)
    (out / "result.json").write_text(json.dumps(detail, indent=2) + "\n", encoding="utf-8")
    failed = [_describe(r) for r in detail["results"] if not r["success"]]
    summary = {
        "success": bool(detail["success"]),
        "evaluated": len(detail["results"]),
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
