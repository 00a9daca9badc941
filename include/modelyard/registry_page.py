"""The registry page inside the Airflow UI: versions, aliases, gate decisions and the ledger.

Served by the API server as a plugin FastAPI app. Plugin apps are unauthenticated unless
they ask for it, so every route depends on Airflow's own login (the JWT cookie the UI sets,
or a bearer token). Read-only: stage moves go through the ``promote_model`` DAG, so each
one is a DAG run with an actor and a ledger entry.
"""

from __future__ import annotations

from html import escape

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5rem}table{border-collapse:collapse;"
    "margin-bottom:2rem}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}"
    ".pass{color:#17692e}.fail{color:#a4161a}"
)


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(status: dict) -> str:
    """HTML for a ``modelyard.registry.status`` snapshot (cells escaped)."""
    versions = []
    for v in status.get("versions", []):
        decision = str(v.get("gate_decision", ""))
        css = "pass" if decision == "passed" else "fail"
        metrics = ", ".join(
            f"{k}={val:.3f}" if isinstance(val, float) else f"{k}={val}"
            for k, val in sorted(v.get("metrics", {}).items())
        )
        versions.append(
            [
                escape(str(v["version"])),
                escape(", ".join(v.get("aliases", []))),
                f'<span class="{css}">{escape(decision)}</span>',
                escape(str(v.get("dataset_version", ""))),
                escape(str(v.get("suite_version", ""))),
                escape(str(v.get("base_model", ""))),
                escape(metrics),
            ]
        )
    ledger = [
        [
            escape(str(e.get(k) or ""))
            for k in (
                "at",
                "actor",
                "action",
                "version",
                "from_stage",
                "to_stage",
                "from_version",
                "reason",
                "dag_run_id",
            )
        ]
        for e in reversed(status.get("ledger", []))
    ]
    return (
        f"<!doctype html><html><head><title>modelyard registry</title><style>{STYLE}</style>"
        f"</head><body><h1>{escape(str(status.get('model', '')))}</h1><h2>Versions</h2>"
        + _table(
            ["version", "aliases", "gate", "dataset", "eval suite", "base", "metrics"], versions
        )
        + "<h2>Promotion ledger</h2>"
        + _table(
            [
                "at",
                "who",
                "action",
                "version",
                "from stage",
                "to stage",
                "replaced version",
                "why",
                "DAG run",
            ],
            ledger,
        )
        + "</body></html>"
    )


def _status() -> dict:
    from modelyard.registry import status
    from modelyard.registry.connection import StoreMissing
    from modelyard.registry.status import unregistered
    from modelyard.settings import get_settings

    settings = get_settings()
    try:
        return status(settings)
    except StoreMissing as missing:  # nothing registered yet; never create a store to say so
        return unregistered(settings.registered_model, str(missing))


def create_app(auth: object | None = None) -> FastAPI:
    """``auth`` is the dependency guarding every route; default: Airflow's logged-in user."""
    if auth is None:
        from airflow.api_fastapi.core_api.security import requires_authenticated

        auth = requires_authenticated()
    app = FastAPI(title="modelyard registry", dependencies=[Depends(auth)])

    @app.get("/status.json")
    def status_json() -> dict:
        return _status()

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return render(_status())

    return app
