"""What the user runs, timed: the whole `modelyard curate` process against a plain datasketch loop.

    python bench/curation.py --records 50000 200000 --repeat 3

Generates a corpus per size (three raw shapes, ~5% exact and ~5% planted near-duplicates),
then times, each as its own process, `repeat` times:

- ``modelyard curate`` (the CLI: Python start-up, imports, curation, the GX gate, Data Docs),
  default settings, and with ``workers: 1``; its stage times (curate, gate) are the ones it
  prints;
- a baseline as a first implementation would write it: ``json.loads`` each line, lower-case
  and collapse white space, exact dedup on a hash of that text, and one datasketch
  ``MinHash`` per record queried against and inserted into a ``MinHashLSH`` (no gate).

Wall time, CPU time (the process and its children) and peak RSS of the whole process tree
(sampled every 20 ms, children summed) are measured from outside; the table shows medians.
Near-dup recall and precision are against the planted pairs whose true word 5-gram Jaccard
is at least the threshold.
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

import psutil

THRESHOLD, NGRAM, PERM = 0.8, 5, 128
MODELYARD = Path(sys.executable).parent / "modelyard"
IMPLEMENTATIONS = ("modelyard curate (defaults)", "modelyard curate, workers=1", "datasketch loop")


def _words(n: int, rng: random.Random) -> list[str]:
    syllables = "ka lo mi ren tu sa vel dor pi qua ne zo bri hal".split()
    return ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(n)]


def _shape(i: int, prompt: str, completion: str) -> dict:
    if i % 3 == 0:
        return {"id": f"r{i}", "prompt": prompt, "completion": completion}
    if i % 3 == 1:
        turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        return {"id": f"r{i}", "messages": turns}
    return {"id": f"r{i}", "instruction": prompt, "output": completion}


def make_corpus(path: Path, records: int, seed: int = 0) -> tuple[dict[str, str], dict[str, str]]:
    """Write ``path/<date>/part-0.jsonl``; returns (planted near-dup id -> source id, id ->
    text). About 5% exact duplicates and 5% near-duplicates (one word replaced in a 60-100
    word record), each placed after its original."""
    rng = random.Random(seed)
    vocab = _words(30_000, rng)
    out = path / "2026-11-20"
    out.mkdir(parents=True)
    planted: dict[str, str] = {}
    texts: dict[str, str] = {}
    originals: list[tuple[str, str, str]] = []
    with (out / "part-0.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(records):
            roll = rng.random()
            if originals and roll < 0.05:
                _, prompt, completion = rng.choice(originals)
            elif originals and roll < 0.10:
                source, prompt, completion = rng.choice(originals)
                words = prompt.split()
                words[rng.randrange(len(words))] = rng.choice(vocab)
                prompt = " ".join(words)
                planted[f"r{i}"] = source
            else:
                prompt = " ".join(rng.choices(vocab, k=rng.randint(50, 90)))
                completion = " ".join(rng.choices(vocab, k=10))
            if roll >= 0.10:  # only originals are sources: no near-dup of a near-dup
                originals.append((f"r{i}", prompt, completion))
            texts[f"r{i}"] = f"{prompt}\n{completion}"
            handle.write(json.dumps(_shape(i, prompt, completion)) + "\n")
    return planted, texts


def _grams(text: str) -> set[str]:
    words = text.lower().split()
    return {" ".join(words[i : i + NGRAM]) for i in range(max(len(words) - NGRAM + 1, 1))}


def _jaccard(a: str, b: str) -> float:
    x, y = _grams(a), _grams(b)
    return len(x & y) / len(x | y)


# --- the baseline, run as its own process ---------------------------------------------------


def baseline(partition: Path) -> dict[str, str]:
    """Near-duplicate pairs found by the plain per-record datasketch loop."""
    import hashlib

    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=PERM)
    seen: set[bytes] = set()
    pairs: dict[str, str] = {}
    with (partition / "part-0.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if "messages" in row:
                parts = [turn["content"] for turn in row["messages"]]
            else:
                parts = [row.get("prompt") or row.get("instruction"), row.get("completion")]
                parts.append(row.get("output"))
            text = " ".join(" ".join(p for p in parts if p).lower().split())
            digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
            if digest in seen:
                continue
            seen.add(digest)
            signature = MinHash(num_perm=PERM)
            signature.update_batch(g.encode() for g in _grams(text))
            if match := lsh.query(signature):
                pairs[row["id"]] = min(match)
            else:
                lsh.insert(row["id"], signature)
    return pairs


# --- measuring a process from outside ------------------------------------------------------


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(cmd: list[str]) -> dict:
    """Run ``cmd``; its wall time, CPU time (with its children) and peak RSS of its process
    tree (summed over the processes alive at each 20 ms sample)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        cpu, start = _children_cpu(), time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)  # files: no pipe to fill
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass  # a process ended between listing and reading it
            time.sleep(0.02)
        seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[:2]} failed ({proc.returncode}): {err.read()[-2000:]}")
        return {"seconds": seconds, "cpu": cpu, "peak_mb": peak / 2**20, "stdout": out.read()}


def measure(kind: str, partition: Path, work: Path) -> dict:
    if kind == "datasketch loop":
        run = run_measured([sys.executable, __file__, "--baseline", str(partition)])
        return {**run, "pairs": json.loads(run["stdout"])}
    out = work / "out"
    cmd = [str(MODELYARD), "curate", "--input", str(partition), "--output", str(out)]
    if kind.endswith("workers=1"):
        config = work / "workers1.yaml"
        config.write_text("workers: 1\n")
        cmd += ["--config", str(config)]
    run = run_measured(cmd)
    printed = json.loads(run["stdout"])
    if not printed["gx"]:
        raise RuntimeError("the gate did not pass")
    pairs = {}
    with (out / "rejected.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["reason"] == "near_duplicate":
                pairs[row["id"]] = row["duplicate_of"]
    return {**run, "pairs": pairs, "stages": printed["seconds"]}


def quality(pairs: dict[str, str], planted: dict[str, str], texts: dict[str, str]) -> tuple:
    truth = {i for i, src in planted.items() if _jaccard(texts[i], texts[src]) >= THRESHOLD}
    recall = len(truth & set(pairs)) / max(len(truth), 1)
    correct = sum(_jaccard(texts[i], texts[of]) >= THRESHOLD for i, of in pairs.items())
    return recall, correct / max(len(pairs), 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; medians shown")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        print(json.dumps(baseline(args.baseline)))
        return
    rows = [
        "| records | implementation | wall s | records/s | CPU s | peak RSS MB "
        "| curate s | gate s | near-dup recall | near-dup precision |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    kinds = [k for k in IMPLEMENTATIONS if not (args.no_baseline and k == "datasketch loop")]
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.records:
            root = Path(tmp) / f"n{n}"
            planted, texts = make_corpus(root / "raw", n)
            partition = root / "raw" / "2026-11-20"
            speed = {}
            for kind in kinds:
                runs = [measure(kind, partition, root) for _ in range(args.repeat)]
                seconds = statistics.median(r["seconds"] for r in runs)
                speed[kind] = n / seconds
                recall, precision = quality(runs[0]["pairs"], planted, texts)
                stages = [
                    f"{statistics.median(r['stages'][s] for r in runs):.1f}"
                    if "stages" in runs[0]
                    else ""
                    for s in ("curate", "gate")
                ]
                rows.append(
                    f"| {n:,} | {kind} | {seconds:.1f} | {n / seconds:,.0f} "
                    f"| {statistics.median(r['cpu'] for r in runs):.1f} "
                    f"| {statistics.median(r['peak_mb'] for r in runs):,.0f} "
                    f"| {stages[0]} | {stages[1]} | {recall:.3f} | {precision:.3f} |"
                )
            if "datasketch loop" in speed:
                ratio = speed[IMPLEMENTATIONS[0]] / speed["datasketch loop"]
                rows.append(
                    f"| {n:,} | modelyard (defaults) / datasketch loop | {ratio:.1f}x |" + " |" * 7
                )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
