"""Curation throughput, memory and near-dup quality against a plain datasketch baseline.

    python bench/curation.py --records 50000 200000

Generates a corpus (three raw shapes, planted exact and near duplicates), then for each size
runs, each in a fresh worker process so peak RSS is per run (imports excluded from the
timing; wall and CPU time both shown, as the machine may be shared; CPU and peak RSS include
curation's preparation processes): the full curation (``modelyard.curation.pipeline.curate``,
default settings, classifier off; then with ``workers=1``) and a baseline doing only parse + exact
dedup + datasketch ``MinHashLSH`` near-dedup with per-record Python loops. Prints a
markdown table: records/s (median of --repeat), peak RSS, near-dup recall and precision
(ground truth: planted near-duplicates whose true word 5-gram Jaccard >= the threshold).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THRESHOLD, NGRAM, PERM = 0.8, 5, 128
# implementation -> preparation processes (see CurationSettings.workers); None = default
IMPLEMENTATIONS = {
    "modelyard curate (defaults)": None,
    "modelyard curate, workers=1": 1,
    "datasketch baseline": 0,
}


def _words(n: int, rng: random.Random) -> list[str]:
    syllables = [
        "ka",
        "lo",
        "mi",
        "ren",
        "tu",
        "sa",
        "vel",
        "dor",
        "pi",
        "qua",
        "ne",
        "zo",
        "bri",
        "hal",
    ]
    return ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(n)]


def _shape(i: int, prompt: str, completion: str) -> dict:
    if i % 3 == 0:
        return {"id": f"r{i}", "prompt": prompt, "completion": completion}
    if i % 3 == 1:
        return {
            "id": f"r{i}",
            "messages": [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": completion},
            ],
        }
    return {"id": f"r{i}", "instruction": prompt, "output": completion}


def make_corpus(path: Path, records: int, seed: int = 0) -> dict[str, str]:
    """Write ``path/<date>/part-0.jsonl``; returns planted near-dup id -> source id.

    About 5% exact duplicates and 5% near-duplicates (one word replaced in a 60-100 word
    record), each placed after its original.
    """
    rng = random.Random(seed)
    vocab = _words(30_000, rng)
    out = path / "2026-11-20"
    out.mkdir(parents=True)
    planted: dict[str, str] = {}
    texts: list[tuple[str, str]] = []
    with (out / "part-0.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(records):
            roll = rng.random()
            if texts and roll < 0.05:
                prompt, completion = rng.choice(texts)
            elif texts and roll < 0.10:
                j = rng.randrange(len(texts))
                prompt, completion = texts[j]
                words = prompt.split()
                words[rng.randrange(len(words))] = rng.choice(vocab)
                prompt = " ".join(words)
                planted[f"r{i}"] = f"r{j}"
            else:
                prompt = " ".join(rng.choices(vocab, k=rng.randint(50, 90)))
                completion = " ".join(rng.choices(vocab, k=10))
            if roll >= 0.10:  # only originals are sources: no near-dup of a near-dup
                texts.append((prompt, completion))
            handle.write(json.dumps(_shape(i, prompt, completion)) + "\n")
    return planted


def _records(partition: Path) -> dict[str, str]:
    """id -> curation text of every input record (for ground truth)."""
    from modelyard.curation.records import parse

    texts = {}
    with (partition / "part-0.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = parse(json.loads(line), {})
            texts[record.id] = record.text
    return texts


def _jaccard(a: str, b: str) -> float:
    def grams(text: str) -> set[tuple[str, ...]]:
        w = text.lower().split()
        return {tuple(w[i : i + NGRAM]) for i in range(max(len(w) - NGRAM + 1, 1))}

    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y)


# --- workers (one process per measurement) -----------------------------------------------


def run_ours(partition: Path, output: Path, workers: int | None) -> dict[str, str]:
    from modelyard.curation.pipeline import curate
    from modelyard.settings import CurationSettings

    settings = CurationSettings() if workers is None else CurationSettings(workers=workers)
    curate(partition, output, settings, partition=partition.name)
    pairs = {}
    with (output / "rejected.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["reason"] == "near_duplicate":
                pairs[row["id"]] = row["duplicate_of"]
    return pairs


def run_baseline(partition: Path, output: Path) -> dict[str, str]:
    """What a first implementation looks like: one record at a time through datasketch."""
    import hashlib

    from datasketch import MinHash, MinHashLSH

    from modelyard.curation.records import parse

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=PERM)
    seen: set[bytes] = set()
    pairs = {}
    with (partition / "part-0.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = parse(json.loads(line), {})
            text = record.text
            digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
            if digest in seen:
                continue
            seen.add(digest)
            words = text.lower().split()
            grams = {
                " ".join(words[i : i + NGRAM]).encode()
                for i in range(max(len(words) - NGRAM + 1, 1))
            }
            sig = MinHash(num_perm=PERM)
            sig.update_batch(grams)
            if match := lsh.query(sig):
                pairs[record.id] = min(match)
            else:
                lsh.insert(record.id, sig)
    return pairs


def worker(kind: str, partition: Path, output: Path) -> None:
    import datasketch  # noqa: F401  (imports are not part of the measurement)

    import modelyard.curation  # noqa: F401

    start, cpu = time.perf_counter(), time.process_time()
    if kind == "datasketch baseline":
        pairs = run_baseline(partition, output)
    else:
        pairs = run_ours(partition, output, workers=IMPLEMENTATIONS[kind])
    seconds = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes, if any
    cpu = time.process_time() - cpu + children.ru_utime + children.ru_stime
    peak_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, children.ru_maxrss) / 1024
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_rss_mb": peak_mb, "pairs": pairs}))


# --- driver --------------------------------------------------------------------------------


def measure(kind: str, partition: Path, output: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--partition",
        str(partition),
        "--output",
        str(output),
    ]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def quality(
    pairs: dict[str, str], planted: dict[str, str], texts: dict[str, str]
) -> tuple[float, float]:
    truth = {i for i, src in planted.items() if _jaccard(texts[i], texts[src]) >= THRESHOLD}
    recall = len(truth & set(pairs)) / max(len(truth), 1)
    correct = sum(_jaccard(texts[i], texts[of]) >= THRESHOLD for i, of in pairs.items())
    return recall, correct / max(len(pairs), 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per cell; the table shows medians"
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--worker", choices=list(IMPLEMENTATIONS), help=argparse.SUPPRESS)
    parser.add_argument("--partition", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.partition, args.output)
        return
    rows = [
        "| records | implementation | records/s (wall) | records/CPU-s | peak RSS (MB) "
        + "| near-dup recall | near-dup precision |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    kinds = [k for k in IMPLEMENTATIONS if IMPLEMENTATIONS[k] != 0 or not args.no_baseline]
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.records:
            root = Path(tmp) / f"n{n}"
            planted = make_corpus(root / "raw", n)
            partition = root / "raw" / "2026-11-20"
            texts = _records(partition)
            speeds = {}
            for kind in kinds:
                output = root / f"out-{list(IMPLEMENTATIONS).index(kind)}"
                runs = [measure(kind, partition, output) for _ in range(args.repeat)]
                seconds = statistics.median(r["seconds"] for r in runs)
                cpu = statistics.median(r["cpu"] for r in runs)
                speeds[kind] = n / seconds
                recall, precision = quality(runs[0]["pairs"], planted, texts)
                peak = statistics.median(r["peak_rss_mb"] for r in runs)
                rows.append(
                    f"| {n:,} | {kind} "
                    f"| {n / seconds:,.0f} | {n / cpu:,.0f} | {peak:,.0f} "
                    f"| {recall:.3f} | {precision:.3f} |"
                )
            if "datasketch baseline" in speeds:
                best = max(v for k, v in speeds.items() if IMPLEMENTATIONS[k] != 0)
                ratio = best / speeds["datasketch baseline"]
                rows.append(f"| {n:,} | best / baseline | {ratio:.1f}x | | | | |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
