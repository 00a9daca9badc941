"""The registry page inside the Airflow UI: versions, why each was passed or refused, the ledger,
and the two moves a person makes from it (promote to the next stage, roll back).

Served by the API server as a plugin FastAPI app (see ``plugins/modelyard_plugin.py``). Plugin
apps are unauthenticated unless they ask for it, so every route depends on Airflow's own login
(the JWT cookie the UI sets, or a bearer token). A move is never made here: the page creates a
``promote_model`` DAG run through Airflow's REST API with the logged-in user's own token, so the
run is triggered *by that person* (Airflow checks their permission again, and the ledger names
them), and it is the same guarded path as a run triggered from the DAG's form. Who may act is
Airflow's decision (``is_authorized_dag(POST, RUN)`` on ``promote_model``): read-only users see
no buttons, and their POSTs get 403. POSTs carry a token signed with Airflow's ``[api]
secret_key`` and bound to the user (the JWT cookie is ``SameSite=Lax``; this closes the rest).

HTML comes from Jinja2 templates (``templates/``, autoescaping on); this module only turns the
registry status into plain values. Values are formatted defensively: one hand-edited tag must
not take the page down for every version.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

#: Where the plugin mounts this app inside the Airflow API server.
URL_PREFIX = "/modelyard"
PROMOTE_DAG = "promote_model"
#: The stage a version moves to from the alias it holds.
NEXT_STAGE = {"staging": "canary", "canary": "production"}
CSRF_SALT = "modelyard-registry-actions"
CSRF_MAX_AGE_S = 8 * 3600

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


@lru_cache
def _lineage_labels() -> dict[str, str]:
    from modelyard.registry import tags  # imports MLflow: only once a page is drawn

    return {
        tags.DATASET_VERSION: "dataset version",
        tags.DATASET_HASH: "dataset hash",
        tags.SNAPSHOT: "training snapshot",
        tags.SNAPSHOT_VERSIONS: "snapshot versions",
        tags.BASE_MODEL: "base model",
        tags.BASE_REVISION: "base revision",
        tags.CONFIG_HASH: "config hash",
        tags.GIT_SHA: "git sha",
        tags.MLFLOW_RUN_ID: "MLflow run",
        tags.GATE_REPORT: "gate report",
    }


@dataclass(frozen=True)
class Viewer:
    """The logged-in person as this page needs them."""

    name: str
    can_act: bool
    token: str = ""
    csrf: str = ""


@dataclass(frozen=True)
class Links:
    """Bases of the URLs the page draws: the Airflow UI root and the MLflow UI (may be empty)."""

    airflow: str = ""
    mlflow: str = ""

    def dag_run(self, dag_id: str | None, run_id: str | None) -> str | None:
        if not dag_id or not run_id:
            return None
        return f"{self.airflow}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"

    def mlflow_version(self, model: str, version: str) -> str | None:
        if not self.mlflow:
            return None
        return f"{self.mlflow.rstrip('/')}/#/models/{quote(model, safe='')}/versions/{version}"


# ---- plain values from a registry status (tolerant of hand-edited tags) ----


def fmt(value: Any, signed: bool = False) -> str:
    """A number as 3 significant digits (signed for margins and deltas), anything else as text."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int | float):
        return f"{value:+.3g}" if signed else f"{value:.3g}"
    return str(value)[:200]


def _notes(row: dict[str, Any]) -> list[str]:
    """What the registry could not read in a version or ledger entry (``status()``'s notes)."""
    notes = row.get("notes") or []
    return [str(n) for n in ([notes] if isinstance(notes, str) else notes)]


def _as_dict(value: Any, field: str, notes: list[str]) -> dict:
    if value is None or isinstance(value, dict):
        return value or {}
    notes.append(f"unreadable {field}: {fmt(value)}")
    return {}


def _delta(candidate: Any, incumbent: Any) -> str:
    pair = (candidate, incumbent)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in pair)
    return fmt(candidate - incumbent, signed=True) if numbers else ""


def version_view(row: dict[str, Any], model: str, links: Links, viewer: Viewer) -> dict[str, Any]:
    """One version's card: gate verdict and margins, comparison, lineage, links, actions."""
    from modelyard.registry import tags

    notes = _notes(row)
    version = str(row.get("version", "?"))
    aliases = [str(a) for a in row.get("aliases") or []]
    metrics = _as_dict(row.get("metrics"), "metrics", notes)
    margins = _as_dict(row.get("gate_margins"), "gate margins", notes)
    compared = _as_dict(row.get("compared_with"), "compared-with", notes)
    theirs = _as_dict(compared.get("metrics"), "incumbent scores", notes)
    failed_raw = row.get("gate_failed") or ""
    failed = failed_raw if isinstance(failed_raw, list) else str(failed_raw).split(",")
    failed_names = [str(name).strip() for name in failed if str(name).strip()]
    decision = row.get("gate_decision")
    lineage = _as_dict(row.get("lineage"), "lineage", notes)
    dag_id, run_id = lineage.get(tags.DAG_ID), lineage.get(tags.DAG_RUN_ID)
    return {
        "version": version,
        "aliases": aliases,
        "rolled_back": bool(row.get("rolled_back")),
        "decision": decision if decision in ("passed", "failed") else "unknown",
        "failed": [{"name": n, "margin": fmt(margins.get(n), signed=True)} for n in failed_names],
        "checks": [
            {"name": str(n), "margin": fmt(m, signed=True), "failed": n in failed_names}
            for n, m in sorted(margins.items())
        ],
        "compared_label": str(compared.get("label") or "no incumbent recorded"),
        "scores": [
            {
                "metric": str(name),
                "candidate": fmt(value),
                "incumbent": fmt(theirs.get(name)),
                "delta": _delta(value, theirs.get(name)),
            }
            for name, value in sorted(metrics.items())
        ],
        "suite": fmt(row.get("suite_version")),
        "lineage": [
            (_lineage_labels().get(tag, tag), fmt(value))
            for tag, value in lineage.items()
            if value and tag not in (tags.DAG_ID, tags.DAG_RUN_ID)
        ],
        "dag_run": {"id": run_id, "url": links.dag_run(dag_id, run_id)},
        "mlflow_url": links.mlflow_version(model, version),
        "actions": _actions(version, aliases) if viewer.can_act else [],
        "canary": canary_view(row.get("canary_analysis"), row.get("canary_verdict"), notes),
        "notes": notes,
    }


def canary_view(analysis: Any, verdict: Any, notes: list[str]) -> dict[str, Any] | None:
    """The version's latest canary analysis (``modelyard.canary.analysis`` tag) as a table."""
    if analysis is None:
        return None
    if not isinstance(analysis, dict):
        notes.append(f"unreadable canary analysis: {fmt(analysis)}")
        return None
    rows = []
    for m in analysis.get("metrics") or []:
        if not isinstance(m, dict):
            continue
        samples = m.get("samples") if isinstance(m.get("samples"), list) else []
        rows.append(
            {
                "name": fmt(m.get("name")),
                "verdict": str(m.get("verdict") or "?"),
                "critical": bool(m.get("critical")),
                "canary": fmt(m.get("canary")),
                "production": fmt(m.get("production")),
                "p_value": fmt(m.get("p_value")),
                "samples": " / ".join(fmt(n) for n in samples),
            }
        )
    return {
        "at": fmt(analysis.get("at")),
        "outcome": fmt(analysis.get("outcome")),
        "reason": fmt(analysis.get("reason")),
        "production_version": fmt(analysis.get("production_version")),
        "elapsed": fmt(analysis.get("elapsed_minutes")),
        "report": fmt(analysis.get("report")),
        "failed": verdict == "failed",
        "metrics": rows,
    }


def _actions(version: str, aliases: list[str]) -> list[dict[str, str]]:
    actions = [
        {"action": "promote", "to": NEXT_STAGE[alias], "label": f"Promote to {NEXT_STAGE[alias]}"}
        for alias in aliases
        if alias in NEXT_STAGE
    ]
    if "production" in aliases:
        actions.append({"action": "rollback", "to": "", "label": "Roll back production"})
    return [{**a, "version": version} for a in actions]


def ledger_view(entries: list[Any], links: Links) -> list[dict[str, Any]]:
    """Newest first; who (actor, and whom they acted for), what, and the DAG run behind it."""
    rows = []
    for entry in reversed(entries):
        if not isinstance(entry, dict):
            rows.append({"unreadable": fmt(entry)})
            continue
        action = str(entry.get("action") or "")
        dag_id = entry.get("dag_id") or (PROMOTE_DAG if action in ("promote", "rollback") else None)
        rows.append(
            {
                "seq": fmt(entry.get("seq")),
                "at": fmt(entry.get("at")),
                "actor": fmt(entry.get("actor")),
                "on_behalf_of": entry.get("on_behalf_of"),
                "action": action,
                "rollback": action == "rollback",
                "version": fmt(entry.get("version")),
                "from_stage": fmt(entry.get("from_stage")),
                "to_stage": fmt(entry.get("to_stage")),
                "from_version": fmt(entry.get("from_version")),
                "reason": fmt(entry.get("reason")),
                "notes": _notes(entry),
                "dag_run": {
                    "id": entry.get("dag_run_id"),
                    "url": links.dag_run(dag_id, entry.get("dag_run_id")),
                },
            }
        )
    return rows


def render_registry(status: dict[str, Any], viewer: Viewer, links: Links) -> str:
    """The registry page for a ``modelyard.registry.status`` snapshot."""
    model = str(status.get("model", ""))
    versions = [
        version_view(row, model, links, viewer)
        if isinstance(row, dict)
        else {"version": "?", "notes": [f"unreadable version row: {fmt(row)}"]}
        for row in reversed(status.get("versions") or [])
    ]
    aliases = status.get("aliases") if isinstance(status.get("aliases"), dict) else {}
    return _templates.get_template("registry.html").render(
        model=model,
        exists=bool(status.get("exists")),
        problem=status.get("problem"),
        aliases={str(k): str(v) for k, v in aliases.items()},
        previous_production=status.get("previous_production"),
        versions=versions,
        ledger=ledger_view(list(status.get("ledger") or []), links),
        viewer=viewer,
        error=status.get("error"),
    )


def run_outcome(run: dict, tasks: list[dict], result: dict | None, error: str | None) -> str:
    """One sentence on what a ``promote_model`` run did (or is doing)."""
    states = {t["task_id"]: t["state"] for t in tasks}
    if run["state"] in ("queued", "running"):
        if states.get("approve") in ("deferred", "awaiting_input"):
            return "waiting for a human approval (answer it on the run's page in Airflow)"
        return f"{run['state']}..."
    if run["state"] == "failed":
        return f"refused: {error}" if error else "failed (see the run's task logs)"
    if result and "rolled_back_from" in result:
        return (
            f"production rolled back from v{result['rolled_back_from']} to v{result.get('version')}"
        )
    if result and "stage" in result:
        was = f" (was v{result['from_version']})" if result.get("from_version") else ""
        return f"v{result.get('version')} now holds {result['stage']}{was}"
    if states.get("promote") == "skipped" and states.get("approve"):
        return "the approval was rejected: nothing moved"
    return f"{run['state']}"


def render_run(run: dict, tasks: list[dict], outcome: str, links: Links) -> str:
    return _templates.get_template("run.html").render(
        run=run,
        tasks=tasks,
        outcome=outcome,
        finished=run["state"] not in ("queued", "running"),
        run_url=links.dag_run(run["dag_id"], run["dag_run_id"]),
    )


# ---- the app inside Airflow's API server ----


def _serializer():
    from airflow.api_fastapi.auth.tokens import get_signing_key
    from itsdangerous import URLSafeTimedSerializer

    return URLSafeTimedSerializer(get_signing_key("api", "secret_key"), salt=CSRF_SALT)


def _form_owner(token: str) -> str | None:
    """The user a form token was issued to, if it is genuine and recent."""
    from itsdangerous import BadData

    try:
        return _serializer().loads(token, max_age=CSRF_MAX_AGE_S)
    except BadData:
        return None


def _self_url() -> str:
    """This API server's own base URL, from Airflow's config (never from the request's Host)."""
    from airflow.configuration import conf

    if base := conf.get("api", "base_url", fallback=""):
        return base.rstrip("/")
    host = conf.get("api", "host", fallback="") or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{host}:{conf.getint('api', 'port', fallback=8080)}"


def _links(request: Request) -> Links:
    from modelyard.settings import get_settings

    root = request.scope.get("root_path", "").removesuffix(URL_PREFIX)
    return Links(airflow=root, mlflow=get_settings().ui.mlflow_ui_url)


async def _viewer(request: Request) -> Viewer:
    """The logged-in user (401 if none), whether Airflow lets them trigger ``promote_model``,
    and the token that identifies them to the REST API."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    credentials = await bearer_scheme(request)
    try:
        user = await get_user(request, None, credentials)
    except HTTPException as exc:
        if (
            exc.status_code == 401
            and request.method == "GET"
            and not request.url.path.endswith(".json")
        ):
            # A person opening the page without a session: Airflow's login, then back here.
            login = get_auth_manager().get_url_login(next_url=request.url.path)
            root = request.scope.get("root_path", "").removesuffix(URL_PREFIX)
            raise HTTPException(303, headers={"Location": f"{root}{login}"}) from None
        raise
    token = credentials.credentials if credentials else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    can_act = get_auth_manager().is_authorized_dag(
        method="POST",
        access_entity=DagAccessEntity.RUN,
        details=DagDetails(id=PROMOTE_DAG),
        user=user,
    )
    name = user.get_name()
    return Viewer(name=name, can_act=can_act, token=token or "", csrf=_serializer().dumps(name))


ViewerDep = Annotated[Viewer, Depends(_viewer)]


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


def _api(viewer: Viewer):
    from modelyard.airflow_api import AirflowAPI

    return AirflowAPI(_self_url(), viewer.token)


def _version_value(api, version: str) -> int | str:
    """``version`` as the DAG's Param declares it (integer, or string in older DAG versions):
    Airflow validates the run's conf against the Param's schema."""
    schema = api.get(f"/api/v2/dags/{PROMOTE_DAG}/details")["params"]["version"]["schema"]
    kinds = schema.get("type", [])
    return int(version) if "integer" in (kinds if isinstance(kinds, list) else [kinds]) else version


def trigger_move(viewer: Viewer, action: str, version: str, to: str, reason: str) -> str:
    """Create the ``promote_model`` run for a move as ``viewer``; returns its run id."""
    api = _api(viewer)
    try:
        dag = api.get(f"/api/v2/dags/{PROMOTE_DAG}")
        if dag["is_paused"]:  # the same choice the trigger form offers ("unpause on trigger")
            api.patch(f"/api/v2/dags/{PROMOTE_DAG}", {"is_paused": False})
        reason = reason.strip() or f"{action} from the registry page"
        if action == "rollback":
            conf = {"rollback": True, "reason": reason}
        else:
            conf = {
                "rollback": False,
                "to": to,
                "version": _version_value(api, version),
                "reason": reason,
            }
        run = api.post(f"/api/v2/dags/{PROMOTE_DAG}/dagRuns", {"logical_date": None, "conf": conf})
    finally:
        api.close()
    return run["dag_run_id"]


def _run_details(viewer: Viewer, run_id: str) -> tuple[dict, list[dict], str]:
    from modelyard.airflow_api import quoted

    api = _api(viewer)
    try:
        path = f"/api/v2/dags/{PROMOTE_DAG}/dagRuns/{quoted(run_id)}"
        run = api.get(path)
        tasks = sorted(
            api.get(f"{path}/taskInstances")["task_instances"], key=lambda t: t["task_id"]
        )
        result, error = None, None
        for task in tasks:
            if task["task_id"] in ("promote", "rollback") and task["state"] == "success":
                xcom = f"{path}/taskInstances/{task['task_id']}/xcomEntries/return_value"
                result = api.get(xcom)["value"]
            if task["state"] == "failed":
                error = api.task_error(PROMOTE_DAG, run_id, task["task_id"], task["try_number"])
    finally:
        api.close()
    return run, tasks, run_outcome(run, tasks, result if isinstance(result, dict) else None, error)


def create_app() -> FastAPI:
    """The plugin app; every route needs Airflow's login."""
    from modelyard.airflow_api import AirflowAPIError

    app = FastAPI(title="modelyard registry", dependencies=[Depends(_viewer)])

    @app.get("/status.json")
    def status_json() -> dict:
        return _status()

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, viewer: ViewerDep) -> str:
        try:
            state = _status()
        except Exception as exc:  # the page says why instead of a bare 500
            state = {"error": f"{type(exc).__name__}: {exc}"}
        return render_registry(state, viewer, _links(request))

    @app.post("/actions")
    def act(
        viewer: ViewerDep,
        action: Annotated[str, Form()],
        version: Annotated[str, Form()] = "",
        to: Annotated[str, Form()] = "",
        reason: Annotated[str, Form(max_length=500)] = "",
        csrf: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        if not viewer.can_act:
            raise HTTPException(403, f"{viewer.name} may not trigger {PROMOTE_DAG}")
        if _form_owner(csrf) != viewer.name:
            raise HTTPException(403, "missing or expired form token: reload the page")
        if action not in ("promote", "rollback"):
            raise HTTPException(400, f"unknown action {action!r}")
        from modelyard.registry.stages import printable_line, version_ref

        if action == "promote":  # checked here: a bad form must not become a doomed run
            try:
                version = version_ref(version) or ""
            except ValueError:  # "²" passes str.isdigit(), not int()
                version = ""
            if not version or to not in NEXT_STAGE.values():
                raise HTTPException(400, "promote needs a version number and a stage to move it to")
        if not printable_line(reason):
            raise HTTPException(400, "the reason must be one line of printable text")
        try:
            run_id = trigger_move(viewer, action, version, to, reason)
        except AirflowAPIError as exc:
            raise HTTPException(exc.status or 502, str(exc)) from None
        return RedirectResponse(f"runs/{quote(run_id, safe='')}", status_code=303)

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str, viewer: ViewerDep) -> str:
        try:
            run, tasks, outcome = _run_details(viewer, run_id)
        except AirflowAPIError as exc:
            raise HTTPException(exc.status or 502, str(exc)) from None
        return render_run(run, tasks, outcome, _links(request))

    return app
