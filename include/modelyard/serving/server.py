"""``modelyard serve``: bind, load the base model, then run the app under uvicorn."""

from __future__ import annotations

import logging
import socket

from modelyard.settings import Settings


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads so a taken port fails at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from modelyard.serving.app import create_app
    from modelyard.serving.backends import make_backend
    from modelyard.serving.gateway import Gateway

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    backend = make_backend(settings)
    sock = _bind(host, port)
    gateway = Gateway(settings, backend)
    gateway.warm()  # the child processes get ready while the base model loads
    try:
        backend.prepare()
    except Exception as exc:  # noqa: BLE001 - one line for the operator, whatever the cause
        sock.close()
        gateway.close_workers()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot load base model {backend.base_model}: {first}") from exc
    app = create_app(gateway)
    # The request log records every request, so uvicorn's access log would only cost CPU.
    config = uvicorn.Config(app, log_level="info", access_log=False, log_config=None)
    uvicorn.Server(config).run(sockets=[sock])
