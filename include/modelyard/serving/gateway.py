"""What the gateway does per request: route, generate, answer, log, count.

The request path does no I/O of its own besides the backend call: routing reads the in-memory
route table, the log entry goes on the writer's queue, metrics are in-process counters. Every
request that reaches routing is logged and counted under the same alias and version, so
``/metrics`` and the request log agree; malformed requests are refused before routing and only
counted (``modelyard_serving_rejected_total``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Any

from modelyard.serving import protocol
from modelyard.serving.backends import AdapterError, Backend, BackendError
from modelyard.serving.chat import Completion
from modelyard.serving.logreader import RequestLogReader
from modelyard.serving.metrics import GatewayMetrics
from modelyard.serving.requestlog import (
    FeedbackEntry,
    RequestEntry,
    RequestLogWriter,
    log_url,
    open_in_child,
)
from modelyard.serving.routing import PRODUCTION, Deployment, deployment_salt, user_hash
from modelyard.serving.watcher import AliasWatcher
from modelyard.serving.worker import Worker
from modelyard.settings import Settings

log = logging.getLogger(__name__)

RECENT = 100_000  # response ids remembered for feedback before their log row is committed
ERROR_KINDS = {
    400: "invalid_request_error",
    404: "not_found_error",
    502: "upstream_error",
    503: "service_unavailable",
}


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str]


@dataclass(frozen=True)
class Served:
    """What feedback needs to know about a response."""

    alias: str | None
    version: str | None
    stored: bool


def error(status: int, message: str, code: str | None = None) -> Reply:
    kind = ERROR_KINDS.get(status, "server_error")
    return Reply(status, protocol.error_body(message, kind, code), {})


class Gateway:
    def __init__(self, settings: Settings, backend: Backend) -> None:
        from modelyard.serving.formatcheck import format_check

        self.settings = settings
        self.backend = backend
        self.metrics = GatewayMetrics()
        self.watcher = AliasWatcher(settings, backend, self.metrics)
        serving = settings.serving
        check = format_check(settings)
        log_worker = Worker(
            "modelyard-request-log", warm=partial(open_in_child, log_url(settings), check)
        )
        self.writer = RequestLogWriter(
            log_url(settings),
            check,
            flush_seconds=serving.log_flush_seconds,
            batch_size=serving.log_batch_size,
            queue_size=serving.log_queue_size,
            on_written=self.metrics.log_written.inc,
            on_dropped=self.metrics.log_dropped.inc,
            worker=log_worker,
        )
        self._workers = (self.watcher.registry, log_worker)
        self.reader = RequestLogReader(log_url(settings), settings.registered_model)
        self._recent: OrderedDict[str, Served] = OrderedDict()
        self._watch: asyncio.Task | None = None
        self.salt = serving.user_salt or deployment_salt(settings.home / "serving" / "user_salt")

    def warm(self) -> None:
        """Spawn the child processes now: their imports (MLflow, SQLAlchemy) and the opening of
        the request log then overlap the base model's load instead of following it."""
        for worker in self._workers:
            worker.start()

    def close_workers(self) -> None:
        """End the child processes of a gateway that will not start (its model failed to load):
        at once, since they only got ready and the operator waits for the error."""
        for worker in self._workers:
            worker.close(timeout=0)

    async def start(self) -> None:
        self.writer.start()
        # What is loaded by now lives as long as the process; a full collection would scan it
        # for nothing, in the middle of requests (60 ms of CPU for the ~90k objects of a
        # started openai-backend gateway, measured on this box; none once frozen).
        gc.freeze()
        self._watch = asyncio.create_task(self.watcher.run(), name="alias-watch")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await self.backend.close()
        # Each child finishes its last call and shuts its interpreter down (about half a
        # second with MLflow or SQLAlchemy loaded): both at once.
        await asyncio.gather(
            asyncio.to_thread(self.watcher.registry.close), asyncio.to_thread(self.writer.close)
        )
        self.reader.close()

    # -- chat ------------------------------------------------------------------------------

    async def chat(self, req: protocol.ChatCompletionRequest, client: str) -> Reply:
        started, arrived = time.perf_counter(), time.time()
        serving = self.settings.serving
        try:
            max_tokens = req.token_budget(serving.default_max_tokens, serving.max_tokens_limit)
        except ValueError as exc:
            self.metrics.rejected.inc()
            return error(400, str(exc))
        model = self.settings.registered_model
        who = user_hash(req.user or client, self.salt)
        deployment: Deployment | None
        if req.model == model:
            alias, deployment = self.watcher.routes.choose(who, serving.canary_share)
            adapter = deployment.adapter if deployment else None
            version = deployment.version if deployment else None
        elif req.model in self.backend.adapters():  # an adapter named directly, as on vLLM
            alias, version, adapter, deployment, model = None, None, req.model, None, req.model
        else:
            self.metrics.rejected.inc()
            return error(404, f"The model `{req.model}` does not exist.", "model_not_found")
        temperature = serving.default_temperature if req.temperature is None else req.temperature
        messages = [m.plain() for m in req.messages]
        completion: Completion | None = None
        backend_ms = 0.0
        if adapter is None:
            status, why = 503, "no production version is loaded yet; see /healthz"
        else:
            if deployment is not None:
                deployment.acquire()  # in the same step as routing: no swap can come between
            t0 = time.perf_counter()
            try:
                completion = await self.backend.complete(adapter, messages, max_tokens, temperature)
                status, why = 200, None
            except BackendError as exc:
                status, why = exc.status, str(exc)
            finally:
                backend_ms = (time.perf_counter() - t0) * 1000
                if deployment is not None:
                    deployment.release()
        latency = time.perf_counter() - started
        response_id = f"chatcmpl-{uuid.uuid4().hex}"
        self.writer.submit(
            RequestEntry(
                id=response_id,
                ts=arrived,
                model=model,
                alias=alias,
                version=version,
                user_hash=who,
                latency_ms=latency * 1000,
                status=status,
                stored=req.store,
                messages=messages if req.store else [],
                completion=completion.text if completion else None,
                prompt_tokens=completion.prompt_tokens if completion else 0,
                completion_tokens=completion.completion_tokens if completion else 0,
                error=why,
                max_tokens=max_tokens,
                temperature=temperature,
            )
        )
        self.metrics.observe(alias or "", version, latency, error=completion is None)
        if completion is None:
            return error(status, why)
        self._remember(response_id, Served(alias, version, req.store))
        headers = {"server-timing": f"backend;dur={backend_ms:.2f}"}
        if version is not None:
            headers["x-modelyard-version"] = version
        if alias is not None:
            headers["x-modelyard-alias"] = alias
        name = f"{model}/{version}" if version else model
        return Reply(
            200,
            protocol.completion_body(
                response_id,
                int(arrived),
                name,
                completion.text,
                completion.finish_reason,
                completion.prompt_tokens,
                completion.completion_tokens,
            ),
            headers,
        )

    def _remember(self, response_id: str, served: Served) -> None:
        self._recent[response_id] = served
        if len(self._recent) > RECENT:
            self._recent.popitem(last=False)

    # -- feedback --------------------------------------------------------------------------

    async def feedback(self, req: protocol.FeedbackRequest) -> Reply:
        served = self._recent.get(req.response_id)
        if served is None:
            record = await asyncio.to_thread(self.reader.response, req.response_id)
            if record is None or record.error is not None:
                self.metrics.rejected.inc()
                return error(404, f"no response {req.response_id} in the request log")
            served = Served(record.alias, record.version, record.stored)
        if served.alias is None:  # an adapter named directly: not an answer of the model
            self.metrics.rejected.inc()
            return error(
                400,
                f"feedback is collected on answers of {self.settings.registered_model}; "
                f"{req.response_id} came from an adapter named directly",
            )
        # A response sent with "store": false keeps no text, the correction included.
        correction = req.correction if served.stored else None
        queued = self.writer.submit(
            FeedbackEntry(time.time(), req.response_id, req.rating, correction)
        )
        self.metrics.feedback.labels(
            served.alias or "", served.version or "", str(req.rating)
        ).inc()
        return Reply(
            200,
            {
                "object": "feedback",
                "response_id": req.response_id,
                "rating": req.rating,
                "recorded": queued,
            },
            {},
        )

    # -- state -----------------------------------------------------------------------------

    def health(self) -> Reply:
        routes = self.watcher.routes
        ready = routes.production is not None
        body = {
            "status": "ready" if ready else "loading",
            "production": routes.production.version if routes.production else None,
            "canary": routes.canary.version if routes.canary else None,
        }
        return Reply(200 if ready else 503, body, {})

    def models(self) -> Reply:
        routes = self.watcher.routes
        model = self.settings.registered_model
        routed = {
            "id": model,
            "object": "model",
            "created": 0,
            "owned_by": "modelyard",
            "versions": {
                alias: d.version
                for alias, d in ((PRODUCTION, routes.production), ("canary", routes.canary))
                if d is not None
            },
        }
        adapters = [
            {"id": name, "object": "model", "created": 0, "owned_by": "modelyard", "parent": model}
            for name in self.backend.adapters()
        ]
        return Reply(200, {"object": "list", "data": [routed, *adapters]}, {})

    def metrics_text(self) -> bytes:
        self.metrics.log_queue.set(self.writer.depth())
        return self.metrics.exposition()

    # -- vLLM's runtime LoRA endpoints -------------------------------------------------------

    async def load_adapter(self, req: protocol.LoadLoraRequest) -> Reply:
        try:
            await self.backend.load(req.lora_name, req.lora_path)
        except AdapterError as exc:
            return error(exc.status, str(exc))
        return Reply(200, f"Success: LoRA adapter '{req.lora_name}' added successfully.", {})

    async def unload_adapter(self, req: protocol.UnloadLoraRequest) -> Reply:
        if self.watcher.owns(req.lora_name):
            return error(
                400, f"adapter {req.lora_name} serves a registry alias; move the alias instead"
            )
        try:
            await self.backend.unload(req.lora_name)
        except AdapterError as exc:
            return error(exc.status, str(exc))
        return Reply(200, f"Success: LoRA adapter '{req.lora_name}' removed successfully.", {})
