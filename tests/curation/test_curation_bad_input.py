"""One bad line never stops a partition: every line ends in train, eval or rejected, and a
file that cannot be read at all is one clear error naming it (CLI and DAG task alike)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from curation_planting import long_record, read_jsonl, write_lines

from modelyard.cli import main
from modelyard.curation.pipeline import REASONS, curate
from modelyard.settings import CurationSettings, Settings
from modelyard.tasks.curation import curate_partition

GOOD = {"prompt": "What is the capital of Peru?", "completion": "Lima is the capital of Peru."}
DEEP = b"[" * 200_000 + b"]" * 200_000


def _shapes() -> list[tuple[bytes, str]]:
    """(raw line, expected outcome: "kept" or a rejection reason), one per shape of trouble."""

    def js(obj: object) -> bytes:
        return json.dumps(obj).encode()

    return [
        (b"\xef\xbb\xbf" + js(long_record(1, "bom-mid-file")), "kept"),
        (js(long_record(2, "crlf")) + b"\r", "kept"),
        (DEEP, "malformed"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "malformed"),
        (b'{"prompt": "x\\ud800y", "completion": "surrogate in content"}', "malformed"),
        (b'{"prompt": "p", "completion": "c", "\\udfff": 1}', "malformed"),
        (b'{"id": "\\ud800", "prompt": "p", "completion": "surrogate in the id"}', "malformed"),
        (b'{"prompt": "p", "completion": "c", "meta": {"deep": ["\\udc00"]}}', "malformed"),
        (b'{"prompt": "p", "completion": "raw \x00 NUL byte"}', "malformed"),
        (b'{"prompt": "p", "completion": "not", "utf8": "\xff\xfe"}', "malformed"),
        (b'{"prompt": "p", "completion": "c", "n": 1' + b"0" * 5000 + b"}", "malformed"),
        (b"", "malformed"),
        (b"   \t", "malformed"),
        (b"null", "schema"),
        (b"[1, 2]", "schema"),
        (b'"just a string"', "schema"),
        (js({"prompt": ["not", "a", "string"], "completion": "c"}), "schema"),
        (js({"messages": [{"role": "user", "content": 7}, {"role": "assistant"}]}), "schema"),
        (js({"messages": [{"role": ["user"], "content": "p"}, {"role": "assistant"}]}), "schema"),
        (js({**GOOD, "id": 1.5}), "schema"),
        (js({**GOOD, "id": True}), "schema"),
        (js({**GOOD, "id": "  "}), "schema"),
        (js({**GOOD, "id": "two\nlines"}), "schema"),
        (js({**GOOD, "id": "sep\u2028arated"}), "schema"),
        (
            js(
                {
                    "prompt": "x\u0000y NUL escaped, kept",
                    "completion": "the NUL is removed",
                    "id": 42,
                }
            ),
            "kept",
        ),
        (js({"prompt": "p", "completion": "c", "extra": "x" * (2 << 20)}), "oversized"),
    ]


def test_every_shape_of_bad_line_is_accounted_for(tmp_path: Path) -> None:
    shapes = _shapes()
    partition = tmp_path / "2026-11-20"
    write_lines(partition / "part-0.jsonl", [b"\xef\xbb\xbf" + json.dumps(GOOD).encode()])
    write_lines(partition / "part-1.jsonl", [line for line, _ in shapes])
    (partition / "part-2.jsonl").write_bytes(b"")  # an empty file is no lines, not an error
    settings = CurationSettings(max_line_bytes=1 << 20, eval_fraction=0.01)
    manifest = curate(partition, tmp_path / "out", settings)

    out = {n: read_jsonl(tmp_path / "out" / f"{n}.jsonl") for n in ("train", "eval", "rejected")}
    counts = manifest["counts"]
    assert counts["input"] == 1 + len(shapes)
    assert counts["input"] == sum(len(rows) for rows in out.values())
    where = {
        (r["source"]["file"], r["source"]["line"]): r.get("reason", "kept")
        for rows in out.values()
        for r in rows
    }
    assert where.pop(("2026-11-20/part-0.jsonl", 1)) == "kept"  # a BOM at the file start
    assert where == {("2026-11-20/part-1.jsonl", n): why for n, (_, why) in enumerate(shapes, 1)}
    assert set(counts["by_reason"]) <= set(REASONS)
    kept = {r["id"]: r for r in out["train"] + out["eval"]}
    assert kept["42"]["prompt"] == "xy NUL escaped, kept"  # numbers as ids, NUL normalised away
    assert {"bom-mid-file", "crlf"} <= set(kept)


def _gzip_lines(path: Path, records: list[dict]) -> bytes:
    data = gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def test_a_truncated_gzip_keeps_the_lines_before_the_cut(tmp_path: Path) -> None:
    records = [long_record(seed, f"r{seed}") for seed in range(400)]
    partition = tmp_path / "2026-11-20"
    whole = _gzip_lines(partition / "part-0.jsonl.gz", records)
    (partition / "part-0.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    write_lines(partition / "part-1.jsonl", [GOOD])  # the next file is still read
    runs = [curate(partition, tmp_path / f"out{n}", CurationSettings()) for n in (1, 2)]
    assert runs[0]["version"] == runs[1]["version"]  # a retry is not blocked, same result
    rejected = read_jsonl(tmp_path / "out1" / "rejected.jsonl")
    cut = [r for r in rejected if r["reason"] == "truncated"]
    assert len(cut) == 1 and "part-0.jsonl.gz" in cut[0]["detail"]
    assert "mid-stream" in cut[0]["detail"]
    counts = runs[0]["counts"]
    read_whole = counts["input"] - 2  # the cut tail and part-1's line
    assert 0 < read_whole < len(records)
    assert counts["input"] == counts["train"] + counts["eval"] + counts["rejected"]
    assert cut[0]["source"] == {"file": "2026-11-20/part-0.jsonl.gz", "line": read_whole + 1}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(
            lambda p: (p / "part-0.jsonl.gz").write_bytes(b'{"prompt": "plain"}\n'),
            "part-0.jsonl.gz: not a gzip file",
            id="not gzip at all",
        ),
        pytest.param(
            lambda p: (p / "part-0.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00broken"),
            "part-0.jsonl.gz: not a readable gzip stream",
            id="gzip header then garbage",
        ),
        pytest.param(
            lambda p: (p / "part-0.jsonl").mkdir(),
            "part-0.jsonl: named like raw input but not a regular file",
            id="a directory named x.jsonl",
        ),
        pytest.param(
            lambda p: (p / "part-0.jsonl").symlink_to(p / "gone.jsonl"),
            "part-0.jsonl: named like raw input but not a regular file",
            id="a dangling symlink",
        ),
    ],
)
def test_an_unreadable_file_is_one_clear_error_naming_it(
    store: Settings, capsys: pytest.CaptureFixture, make, message: str
) -> None:
    partition = Path(store.storage) / "raw" / "2026-11-20"
    partition.mkdir(parents=True)
    write_lines(partition / "part-9.jsonl", [GOOD])
    make(partition)
    out = Path(store.storage) / "out"
    assert main(["curate", "--input", str(partition), "--output", str(out)]) == 2
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("modelyard: error: ")
    assert message in errors[0] and str(partition) in errors[0]
    assert "Traceback" not in captured.err and not out.exists()
    # The DAG task fails with the same single line (and no chained zlib/EOF traceback).
    with pytest.raises(ValueError) as failure:
        curate_partition("2026-11-20", store)
    assert message in str(failure.value) and "\n" not in str(failure.value)
    chained = failure.value.__context__ is not None and not failure.value.__suppress_context__
    assert failure.value.__cause__ is None and not chained


def test_a_file_name_that_is_not_utf8_is_kept_as_escapes(tmp_path: Path) -> None:
    partition = tmp_path / "2026-11-20"
    partition.mkdir()
    name = os.fsdecode(b"caf\xe9.jsonl")
    write_lines(partition / name, [GOOD])
    manifest = curate(partition, tmp_path / "out", CurationSettings(eval_fraction=0.01))
    [record] = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert record["source"]["file"] == "2026-11-20/caf\\xe9.jsonl"
    assert manifest["source_files"][0]["file"] == "2026-11-20/caf\\xe9.jsonl"


def test_a_gzip_cut_inside_an_oversized_line_counts_that_line_once(tmp_path: Path) -> None:
    records = [long_record(seed, f"r{seed}") for seed in range(20)]
    huge = {**long_record(99, "huge"), "completion": "word " * 400_000}  # ~2 MB: oversized
    partition = tmp_path / "2026-11-20"
    whole = _gzip_lines(partition / "part-0.jsonl.gz", [*records, huge])
    (partition / "part-0.jsonl.gz").write_bytes(whole[:-200])  # the cut falls in the huge line
    settings = CurationSettings(max_line_bytes=4096)
    counts = curate(partition, tmp_path / "out", settings)["counts"]
    assert counts["input"] == len(records) + 1, counts
    assert counts["by_reason"] == {"oversized": 1}, counts


def test_every_entry_of_a_partition_is_read_or_named(tmp_path: Path) -> None:
    """Upper-case suffixes are read; what curation cannot read (another compression, plain
    .json, a sub-directory) is named in the manifest instead of dropped without a word."""
    partition = tmp_path / "2026-10-03"
    write_lines(partition / "part-0.jsonl", [long_record(1, "a")])
    write_lines(partition / "part-1.JSONL", [long_record(2, "b")])
    write_lines(partition / "sub" / "part-2.jsonl", [long_record(3, "c")])
    write_lines(partition / "part-3.json", [long_record(4, "d")])
    (partition / "part-4.jsonl.bz2").write_bytes(b"BZh9")
    manifest = curate(partition, tmp_path / "out", CurationSettings())
    assert [f["file"] for f in manifest["source_files"]] == [
        "2026-10-03/part-0.jsonl",
        "2026-10-03/part-1.JSONL",
    ]
    assert manifest["counts"]["input"] == 2
    assert manifest["ignored_files"] == ["part-3.json", "part-4.jsonl.bz2", "sub/"]
