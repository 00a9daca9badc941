"""Import time of each DAG file beyond ``airflow.sdk`` itself (target: under 0.2 s each).

Each measurement is a fresh interpreter that imports ``airflow.sdk`` first, then times
executing the DAG file, so what is left is the cost the file itself adds to every parse
by the DAG processor. Prints a markdown table of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.2
PROBE = """
import importlib.util, json, sys, time
from airflow.sdk import Asset, Param, dag, task  # the baseline every DAG file pays
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def measure(path: Path, env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    print(f"| DAG file | median import beyond airflow.sdk (s), n={args.repeats} | target |")
    print("|---|---|---|")
    for path in sorted((ROOT / "dags").glob("*.py")):
        median = statistics.median(measure(path, env) for _ in range(args.repeats))
        verdict = "ok" if median < TARGET_S else "SLOW"
        print(f"| {path.name} | {median:.3f} | < {TARGET_S} ({verdict}) |")


if __name__ == "__main__":
    main()
