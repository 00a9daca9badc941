"""Prometheus metrics of one gateway, in a registry of its own (two apps in a process never mix).

``requests``, ``errors`` and ``latency`` are labelled by alias and version and count exactly the
requests the request log records, so a dashboard and the log agree; ``log_dropped`` says when
they cannot (the writer's queue was full).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Latency buckets from 5 ms to 60 s: CPU generation on the tiny model is tens of ms, a 7B
# model on a GPU a few seconds.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ns = "modelyard_serving"
        by_version = ("alias", "version")
        reg = self.registry
        self.requests = Counter(
            f"{ns}_requests", "Chat completion requests", by_version, registry=reg
        )
        self.errors = Counter(f"{ns}_errors", "Requests that failed", by_version, registry=reg)
        self.latency = Histogram(
            f"{ns}_request_latency_seconds",
            "Time from request to response",
            by_version,
            buckets=_BUCKETS,
            registry=reg,
        )
        self.feedback = Counter(
            f"{ns}_feedback", "Feedback events", (*by_version, "rating"), registry=reg
        )
        self.rejected = Counter(
            f"{ns}_rejected", "Malformed requests answered 4xx before routing", registry=reg
        )
        self.load_failures = Counter(
            f"{ns}_load_failures", "Versions that failed to load", by_version, registry=reg
        )
        self.swaps = Counter(
            f"{ns}_swaps", "Alias moves taken into service", ("alias",), registry=reg
        )
        self.poll_errors = Counter(f"{ns}_poll_errors", "Failed registry polls", registry=reg)
        self.serving = Gauge(
            f"{ns}_version_info", "1 for the version each alias routes to", by_version, registry=reg
        )
        self.log_written = Counter(f"{ns}_log_written", "Request-log rows committed", registry=reg)
        self.log_dropped = Counter(
            f"{ns}_log_dropped", "Request-log entries dropped (queue full or DB down)", registry=reg
        )
        self.log_queue = Gauge(
            f"{ns}_log_queue_depth", "Entries waiting to be written", registry=reg
        )

    def observe(self, alias: str, version: str | None, seconds: float, error: bool) -> None:
        labels = (alias, version or "")
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)
        if error:
            self.errors.labels(*labels).inc()

    def routed(self, alias: str, old: str | None, new: str | None) -> None:
        if old and old != new:
            self.serving.remove(alias, old)
        if new:
            self.serving.labels(alias, new).set(1)
        self.swaps.labels(alias).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
