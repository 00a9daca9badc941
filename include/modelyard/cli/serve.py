"""``modelyard serve``: the OpenAI-compatible gateway in front of production and canary."""

from __future__ import annotations

import argparse


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1-65535)")
    return port


def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from modelyard.serving.server import serve
    from modelyard.settings import get_settings

    try:
        settings = get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"settings: {where}: {message}") from None
    serve(settings, args.host or settings.serving.host, args.port or settings.serving.port)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve production and canary over an OpenAI-compatible API"
    )
    parser.add_argument("--host", help="address to listen on (default serving.host, 127.0.0.1)")
    parser.add_argument("--port", type=_port, help="port to listen on (default serving.port, 8000)")
    parser.set_defaults(func=_serve)
