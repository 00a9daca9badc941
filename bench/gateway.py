"""Gateway overhead and request-log write rate.

Two real ``modelyard serve`` processes on loopback: an upstream (``local`` backend, vLLM's
runtime LoRA endpoints on) and the gateway in front of it (``openai`` backend), serving one
registered version as production. The same concurrent clients call the upstream directly (by
adapter name, as the gateway does) and then through the gateway, in alternating rounds, with
``max_tokens=1`` so generation does not drown the gateway's own cost. Printed:

* throughput and client-side p50/p99 latency of each path;
* the latency the gateway adds per request: the client's latency minus the upstream call the
  gateway timed itself (its ``Server-Timing: backend;dur=`` header), p50 and p99;
* that the gateway's request log holds exactly the requests it answered (nothing lost);
* the request log writer alone (real PII scrubber and format check, SQLite by default):
  entries per second, submitted as fast as one thread can and committed.

    python bench/gateway.py [--clients 8] [--requests 400] [--rounds 3] [--log-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent
MODEL = "modelyard-assistant"


def free_port() -> int:
    import socket

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
    def __init__(self, home: Path, base: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "MODELYARD_HOME": str(home),
            "MODELYARD_BASE_MODEL": str(base),
            "HF_HUB_OFFLINE": "1",
            **{f"MODELYARD_SERVING__{k.upper()}": v for k, v in settings.items()},
        }
        home.mkdir(parents=True, exist_ok=True)
        with (home / "serve.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "modelyard"), "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
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


def drive(url: str, model: str, clients: int, requests: int) -> tuple[float, list, list]:
    """(seconds, client latencies in ms, gateway-added ms per request where timed)."""
    body = {"model": model, "messages": [{"role": "user", "content": "Lena is a vet from Oslo."}]}
    body |= {"max_tokens": 1, "temperature": 0}
    latencies: list[float] = []
    added: list[float] = []
    lock = threading.Lock()
    per_client = requests // clients

    def client(index: int) -> None:
        with httpx.Client(timeout=120) as http:
            for i in range(per_client):
                t0 = time.perf_counter()
                resp = http.post(f"{url}/v1/chat/completions", json=body | {"user": f"{index}-{i}"})
                ms = (time.perf_counter() - t0) * 1000
                if resp.status_code != 200:
                    sys.exit(f"request failed: {resp.status_code} {resp.text[:200]}")
                timing = resp.headers.get("server-timing")
                with lock:
                    latencies.append(ms)
                    if timing:
                        added.append(ms - float(timing.split("dur=")[1]))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies, added


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)
    )


def log_writer_rate(url: str, entries: int, settings) -> float:
    """Entries/s committed by the writer alone, with the real scrubber and format check."""
    from modelyard.serving.formatcheck import format_check
    from modelyard.serving.requestlog import RequestEntry, RequestLogWriter

    writer = RequestLogWriter(url, format_check(settings), queue_size=entries + 1)
    prompt = "Farid (farid@example.com, +33 1 23 45 67 89) is a baker from Paris. " * 3
    completion = json.dumps({"name": "Farid", "job": "baker", "city": "Paris"})
    batch = [
        RequestEntry(
            id=f"bench-{i}",
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
    start = time.perf_counter()
    writer.start()
    for e in batch:
        writer.submit(e)
    writer.close(timeout=600)
    seconds = time.perf_counter() - start
    if writer.written != entries:
        sys.exit(f"log writer wrote {writer.written} of {entries} (dropped {writer.dropped})")
    return entries / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400, help="per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--log-entries", type=int, default=20_000)
    parser.add_argument("--log-url", default="", help="database for the writer-alone run")
    args = parser.parse_args()

    from modelyard.settings import Settings
    from modelyard.tinymodel import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        root = Path(tmp)
        base = build_tiny_model(root / "tiny-llama")
        version = register_version(root / "front", base)
        upstream = Server(root / "upstream", base, runtime_lora_updates="true")
        front = Server(
            root / "front", base, backend="openai", upstream_url=upstream.url, poll_seconds="5"
        )
        try:
            upstream.wait("/v1/models")
            front.wait("/healthz")
            adapter = f"{MODEL}-v{version}"
            drive(upstream.url, adapter, args.clients, args.clients * 5)  # warm both paths
            drive(front.url, MODEL, args.clients, args.clients * 5)
            direct = {"seconds": 0.0, "latency": [], "added": []}
            gateway = {"seconds": 0.0, "latency": [], "added": []}
            for _ in range(args.rounds):
                for stats, url, model in (
                    (direct, upstream.url, adapter),
                    (gateway, front.url, MODEL),
                ):
                    seconds, latency, added = drive(url, model, args.clients, args.requests)
                    stats["seconds"] += seconds
                    stats["latency"] += latency
                    stats["added"] += added
        finally:
            front.stop()
            upstream.stop()
        from modelyard.serving.logreader import RequestLogReader
        from modelyard.serving.requestlog import log_url

        front_settings = Settings(home=root / "front", base_model=str(base))
        logged = len(RequestLogReader.for_settings(front_settings).requests())
        sent = len(gateway["latency"]) + args.clients * 5
        rate = log_writer_rate(
            args.log_url or log_url(Settings(home=root / "writer")),
            args.log_entries,
            front_settings,
        )

    print(
        f"clients={args.clients}, {args.rounds} rounds x {args.requests} requests per path, "
        "max_tokens=1, tiny model on CPU\n"
    )
    print("| path | requests/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for name, stats in (("upstream directly", direct), ("through the gateway", gateway)):
        lat = stats["latency"]
        rps = len(lat) / stats["seconds"]
        print(f"| {name} | {rps:,.0f} | {pct(lat, 50):.1f} | {pct(lat, 99):.1f} |")
    added = gateway["added"]
    print(
        f"\ngateway-added latency per request (client latency - upstream call timed by the "
        f"gateway): p50 {pct(added, 50):.2f} ms, p99 {pct(added, 99):.2f} ms"
    )
    print(
        f"difference of percentiles: p50 {pct(gateway['latency'], 50) - pct(direct['latency'], 50):.1f}"
        f" ms, p99 {pct(gateway['latency'], 99) - pct(direct['latency'], 99):.1f} ms"
    )
    print(f"request log: {logged} rows for {sent} answered requests ({sent - logged} lost)")
    print(f"request log writer alone: {rate:,.0f} entries/s ({args.log_entries:,} entries)")


if __name__ == "__main__":
    main()
