"""The FastAPI app: HTTP in and out of :class:`modelyard.serving.gateway.Gateway`, nothing else."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelyard.serving import protocol
from modelyard.serving.gateway import Gateway, Reply


def _response(reply: Reply) -> Response:
    if isinstance(reply.body, str):
        return PlainTextResponse(reply.body, reply.status, reply.headers)
    return JSONResponse(reply.body, reply.status, reply.headers)


def _client(request: Request) -> str:
    """Who stands in for a missing ``user``: the first forwarded hop, else the peer address."""
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.split(",")[0].strip()
    return request.client.host if request.client else "unknown"


def _one_line(exc: RequestValidationError) -> str:
    """The first problem, named by its field: what a client needs to fix its request."""
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return f"the body is not valid JSON: {first.get('ctx', {}).get('error', '')}".strip()
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return f"{where}: {message}" if where else message


def create_app(gateway: Gateway) -> FastAPI:
    """The app of ``gateway``, whose ``backend.prepare()`` must have run (``serve`` does it)."""
    settings = gateway.settings

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = FastAPI(title="modelyard gateway", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        gateway.metrics.rejected.inc()
        body = protocol.error_body(_one_line(exc), "invalid_request_error")
        return JSONResponse(body, 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """FastAPI's own refusals (a body it cannot parse: bad bytes, nesting too deep; an
        unknown path or method) in OpenAI's error shape, counted like any rejection."""
        if 400 <= exc.status_code < 500:
            gateway.metrics.rejected.inc()
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        body = protocol.error_body(str(exc.detail), kind)
        return JSONResponse(body, exc.status_code, headers=getattr(exc, "headers", None))

    @app.post("/v1/chat/completions")
    async def chat(req: protocol.ChatCompletionRequest, request: Request) -> Response:
        return _response(await gateway.chat(req, _client(request)))

    @app.post("/v1/feedback")
    async def feedback(req: protocol.FeedbackRequest) -> Response:
        return _response(await gateway.feedback(req))

    @app.get("/v1/models")
    async def models() -> Response:
        return _response(gateway.models())

    @app.get("/healthz")
    async def healthz() -> Response:
        return _response(gateway.health())

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(gateway.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    if settings.serving.runtime_lora_updates:

        @app.post("/v1/load_lora_adapter")
        async def load_lora_adapter(req: protocol.LoadLoraRequest) -> Response:
            return _response(await gateway.load_adapter(req))

        @app.post("/v1/unload_lora_adapter")
        async def unload_lora_adapter(req: protocol.UnloadLoraRequest) -> Response:
            return _response(await gateway.unload_adapter(req))

    return app
