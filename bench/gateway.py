"""Gateway overhead and request-log write rate.

Two real ``modelyard serve`` processes on loopback: an upstream (``local`` backend, vLLM's
runtime LoRA endpoints on) and the gateway in front of it (``openai`` backend), serving one
registered version as production. The same concurrent clients call the upstream directly (by
adapter name, as the gateway does) and then through the gateway, in alternating rounds, with
``max_tokens=1`` so generation does not drown the gateway's own cost. Printed as a table:

* throughput and client-side p50/p99 latency of each path;
* the latency the gateway adds per request: the client's latency minus the upstream call the
  gateway timed itself (its ``Server-Timing: backend;dur=`` header), p50 and p99, and the
  gateway process's CPU time per request (what the latency is made of when cores are free);
* that the gateway's request log holds exactly the requests it answered (nothing lost);
* the request log writer alone (real PII scrubber and format check, SQLite by default), every
  prompt carrying an e-mail address and a phone number: entries per second, committed.

The upstream stands in for a GPU server on this CPU-only box. It runs with one OpenMP thread
(with the default two, its spinning workers cost ten times the CPU per 1-token request) and,
with ``--upstream-nice``, at a lower priority, so it does not take the core the gateway has to
itself on a real deployment. Latencies are wall-clock on a shared machine: the load average
is printed with them.

The load generator is kept light, as wrk or hey are. Each client is its own process on one
keep-alive HTTP/1.1 connection, writing each request in one call and reading the response by
its ``Content-Length`` (:func:`client`); both paths use it. With httpx instead, each client
spent about 1.4 ms of CPU per request (0.2 ms this way, measured in the same run): with 8 of
them on two cores, that CPU took the cores the gateway and the upstream need, and the part of
it inside the timed window (building the request, parsing the response) was counted as latency
the gateway added. The clients' CPU per request is printed, so a heavier client shows.

    python bench/gateway.py [--clients 8] [--requests 400] [--rounds 3] [--upstream-nice 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil

# Run as a script, this directory comes first on sys.path, and bench/trainer.py would shadow
# the trainer package that modelyard.settings imports.
if Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

VENV_BIN = Path(sys.executable).parent
MODEL = "modelyard-assistant"


Results = tuple[list[tuple[float, float | None, str]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def register_version(home: Path, base: Path) -> str:
    """A fresh (identity-initialised) LoRA adapter on the tiny model, registered as production."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from modelyard.registry.artifacts import client_for, log_model_dir
    from modelyard.registry.stages import ensure_registered_model
    from modelyard.settings import Settings

    torch.manual_seed(0)
    adapter = home / "adapter"
    lora = LoraConfig(r=16, target_modules=["q_proj", "v_proj"])
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), lora).save_pretrained(adapter)
    settings = Settings(home=home, base_model=str(base))
    client = client_for(settings)
    ensure_registered_model(client, MODEL)
    experiment = client.create_experiment("bench", artifact_location=settings.artifact_root)
    run = client.create_run(experiment)
    source = log_model_dir(client, run.info.run_id, str(adapter), str(base), None)
    version = str(client.create_model_version(MODEL, source, run_id=run.info.run_id).version)
    client.set_registered_model_alias(MODEL, "production", version)
    return version


class Server:
    def __init__(self, home: Path, base: Path, nice: int = 0, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "MODELYARD_HOME": str(home),
            "MODELYARD_BASE_MODEL": str(base),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            **{f"MODELYARD_SERVING__{k.upper()}": v for k, v in settings.items()},
        }
        home.mkdir(parents=True, exist_ok=True)
        with (home / "serve.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "modelyard"), "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=(lambda: os.nice(nice)) if nice else None,
            )

    def wait(self, path: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"server on {self.port} exited {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}{path}").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        sys.exit(f"server on {self.port} not ready in {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


def client(url: str, model: str, index: int, count: int) -> Results:
    """One client process: (latency ms, gateway-added ms or None, response id) per request,
    and the CPU seconds the client itself spent (its share of the box's two cores).

    One keep-alive HTTP/1.1 connection, a request written in one ``sendall`` and the response
    read by status line, headers and ``Content-Length`` (what both servers send); only the
    exchange itself is timed. Why not httpx: see the module docstring.
    """
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    body = {"model": model, "messages": [{"role": "user", "content": "Lena is a vet from Oslo."}]}
    body |= {"max_tokens": 1, "temperature": 0}
    out: list[tuple[float, float | None, str]] = []
    cpu = time.process_time()
    with socket.create_connection((host, int(port)), 120) as sock, sock.makefile("rb") as reader:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(count):
            payload = json.dumps(body | {"user": f"{index}-{i}"}).encode()
            t0 = time.perf_counter()
            sock.sendall(b"%s%d\r\n\r\n%s" % (head, len(payload), payload))
            status = reader.readline()
            headers = {}
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if b"content-length" not in headers:  # closed, or a chunked answer: not expected
                raise RuntimeError(f"no sized response: {status!r} {headers}")
            answer = reader.read(int(headers[b"content-length"]))
            ms = (time.perf_counter() - t0) * 1000
            if not status.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(f"request failed: {status!r} {answer[:200]!r}")
            timing = headers.get(b"server-timing")
            added = ms - float(timing.split(b"dur=")[1]) if timing else None
            out.append((ms, added, json.loads(answer)["id"]))
    return out, time.process_time() - cpu


def drive(
    pool, url: str, model: str, clients: int, requests: int
) -> tuple[float, list, list, set, float]:
    """(seconds, client latencies in ms, gateway-added ms per request where timed, response ids,
    CPU seconds of the clients).

    Clients are processes: threads of one process would queue on its GIL, and that wait would
    be measured as the server's latency.
    """
    jobs = [(url, model, i, requests // clients) for i in range(clients)]
    start = time.perf_counter()
    parts = pool.starmap(client, jobs)
    seconds = time.perf_counter() - start
    results = [r for part, _ in parts for r in part]
    latencies = [ms for ms, _, _ in results]
    added = [a for _, a, _ in results if a is not None]
    return seconds, latencies, added, {i for *_, i in results}, sum(cpu for _, cpu in parts)


def tree_cpu(proc: psutil.Process) -> float:
    """User + system CPU seconds of the gateway and its children (log writer, registry reads)."""
    return sum(sum(p.cpu_times()[:2]) for p in [proc, *proc.children(recursive=True)])


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)
    )


def log_writer_rate(url: str, entries: int, settings, in_child: bool) -> float:
    """Entries/s committed by the writer alone, with the real scrubber and format check;
    ``in_child``: as the gateway runs it, committing in a child process, else on its thread."""
    from modelyard.serving.formatcheck import format_check
    from modelyard.serving.requestlog import RequestEntry, RequestLogWriter
    from modelyard.serving.worker import Worker

    worker = Worker("bench-request-log") if in_child else None
    writer = RequestLogWriter(url, format_check(settings), queue_size=entries + 1, worker=worker)
    run = uuid.uuid4().hex[:12]  # rows of every run are new, also in a shared database
    prompt = "Farid (farid@example.com, +33 1 23 45 67 89) is a baker from Paris. " * 3
    completion = json.dumps({"name": "Farid", "job": "baker", "city": "Paris"})
    batch = [
        RequestEntry(
            id=f"bench-{run}-{i}",
            ts=time.time(),
            model=MODEL,
            alias="production",
            version="1",
            user_hash=f"{i % 997:016x}",
            latency_ms=12.5,
            status=200,
            stored=i % 10 != 0,
            messages=[{"role": "user", "content": prompt}],
            completion=completion,
            prompt_tokens=40,
            completion_tokens=20,
        )
        for i in range(entries)
    ]
    writer.start().submit(batch[0])  # the child's start (imports, engine) is not timed
    while writer.written == 0 and writer.dropped == 0:
        time.sleep(0.05)
    start = time.perf_counter()
    for e in batch[1:]:
        writer.submit(e)
    writer.close(timeout=600)
    seconds = time.perf_counter() - start
    if writer.written != entries:
        sys.exit(f"log writer wrote {writer.written} of {entries} (dropped {writer.dropped})")
    return (entries - 1) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400, help="per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--upstream-nice", type=int, default=10, help="0: same priority")
    parser.add_argument("--log-entries", type=int, default=20_000)
    parser.add_argument("--log-url", default="", help="database for the writer-alone run")
    args = parser.parse_args()

    from modelyard.serving.logreader import RequestLogReader
    from modelyard.serving.requestlog import log_url
    from modelyard.settings import Settings
    from modelyard.tinymodel import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        root = Path(tmp)
        base = build_tiny_model(root / "tiny-llama")
        version = register_version(root / "front", base)
        upstream = Server(root / "upstream", base, args.upstream_nice, runtime_lora_updates="true")
        front = Server(root / "front", base, backend="openai", upstream_url=upstream.url)
        pool = multiprocessing.get_context("spawn").Pool(args.clients)
        try:
            upstream.wait("/v1/models")
            front.wait("/healthz")
            targets = {
                "direct": (upstream.url, f"{MODEL}-v{version}"),
                "gateway": (front.url, MODEL),
            }
            answered: set[str] = set()  # response ids the gateway sent
            for name, (url, model) in targets.items():  # warm both paths
                ids = drive(pool, url, model, args.clients, args.clients * 5)[3]
                answered |= ids if name == "gateway" else set()
            front_proc = psutil.Process(front.proc.pid)
            loads = [os.getloadavg()[0]]
            paths = {
                name: {
                    "seconds": 0.0,
                    "latency": [],
                    "added": [],
                    "cpu": 0.0,
                    "client_cpu": 0.0,
                    "p99": [],
                }
                for name in targets
            }
            for _ in range(args.rounds):
                for name, (url, model) in targets.items():
                    cpu = tree_cpu(front_proc)
                    seconds, latency, added, ids, client_cpu = drive(
                        pool, url, model, args.clients, args.requests
                    )
                    answered |= ids if name == "gateway" else set()
                    paths[name]["cpu"] += tree_cpu(front_proc) - cpu
                    paths[name]["seconds"] += seconds
                    paths[name]["client_cpu"] += client_cpu
                    paths[name]["latency"] += latency
                    paths[name]["added"] += added
                    paths[name]["p99"].append(pct(added, 99))
                loads.append(os.getloadavg()[0])
        finally:
            pool.terminate()
            front.stop()  # SIGTERM: the gateway's log writer flushes
            upstream.stop()
        front_settings = Settings(home=root / "front", base_model=str(base))
        logged = {r.id for r in RequestLogReader.for_settings(front_settings).requests()}
        writer_url = args.log_url or log_url(Settings(home=root / "writer"))
        rate = log_writer_rate(writer_url, args.log_entries, front_settings, in_child=True)
        thread_url = args.log_url or log_url(Settings(home=root / "writer-thread"))
        thread_rate = log_writer_rate(thread_url, args.log_entries, front_settings, in_child=False)

    direct, gateway = paths["direct"], paths["gateway"]
    idle = direct["cpu"] / len(direct["latency"])  # what the gateway burns unused (polling)
    cpu_ms = (gateway["cpu"] / len(gateway["latency"]) - idle) * 1000
    dl, gl, added = direct["latency"], gateway["latency"], gateway["added"]
    print(
        f"{args.clients} clients, {args.rounds} x {args.requests} requests per path, max_tokens=1,"
        f" upstream nice {args.upstream_nice}, load average {statistics.mean(loads):.1f}"
        f" on {os.cpu_count()} cores\n"
    )
    rows = [
        ("throughput, upstream directly", f"{len(dl) / direct['seconds']:,.0f} req/s", ""),
        ("throughput, through the gateway", f"{len(gl) / gateway['seconds']:,.0f} req/s", ""),
        ("latency p50 / p99, upstream directly", f"{pct(dl, 50):.1f} / {pct(dl, 99):.1f} ms", ""),
        ("latency p50 / p99, through the gateway", f"{pct(gl, 50):.1f} / {pct(gl, 99):.1f} ms", ""),
        (
            "added by the gateway per request, p50 / p90 / p99",
            f"{pct(added, 50):.2f} / {pct(added, 90):.2f} / {pct(added, 99):.2f} ms",
            "p99 < 5 ms",
        ),
        (
            "added by the gateway, p99 of each round (median)",
            " / ".join(f"{v:.2f}" for v in gateway["p99"])
            + f" ms ({statistics.median(gateway['p99']):.2f})",
            "",
        ),
        (
            "the upstream's own HTTP overhead, same measure, p50 / p90 / p99",
            f"{pct(direct['added'], 50):.2f} / {pct(direct['added'], 90):.2f} /"
            f" {pct(direct['added'], 99):.2f} ms",
            "",
        ),
        ("gateway CPU per request (with its child processes)", f"{cpu_ms:.2f} ms", ""),
        (
            "client CPU per request, upstream directly / through the gateway",
            f"{direct['client_cpu'] / len(dl) * 1000:.2f} /"
            f" {gateway['client_cpu'] / len(gl) * 1000:.2f} ms",
            "",
        ),
        (
            "answered requests in the request log",
            f"{len(answered & logged):,} of {len(answered):,}",
            "all",
        ),
        (
            f"log writer alone, as the gateway runs it ({writer_url.split(':')[0]})",
            f"{rate:,.0f} entries/s",
            ">= 2,000/s",
        ),
        ("the same, committing on its own thread", f"{thread_rate:,.0f} entries/s", ""),
    ]
    print("| measure | result | target |")
    print("|---|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if not answered <= logged:
        sys.exit(f"the request log lost {len(answered - logged)} answered requests")


if __name__ == "__main__":
    main()
