"""The registry page's content, rendered from a real MLflow registry (three versions: one in
production, one staged, one the gate refused). The browser test drives the same page inside a
running Airflow; these check what it says about each version, quickly."""

from __future__ import annotations

import re

import pytest
from markupsafe import escape
from mlflow import MlflowClient
from pydantic import ValidationError

from modelyard.registry import promote, status, tags
from modelyard.registry_page import Links, Viewer, render_registry, version_view

ALICE = Viewer(name="alice", can_act=True, csrf="form-token")
VIEWER = Viewer(name="victor", can_act=False, csrf="form-token")
LINKS = Links(airflow="", mlflow="http://mlflow.example:5000")


def _rows(settings) -> dict[str, dict]:
    state = status(settings)
    return {row["version"]: row for row in state["versions"]}


def test_each_version_says_why_it_passed_or_was_refused_and_where_it_came_from(registry_home):
    settings, versions = registry_home
    rows = _rows(settings)
    model = settings.registered_model

    refused = version_view(rows[versions["refused"]], model, LINKS, ALICE)
    assert refused["decision"] == "failed"
    failed = {c["name"]: c["margin"] for c in refused["failed"]}
    assert "rouge_l.threshold" in failed and failed["rouge_l.threshold"].startswith("-")
    assert refused["compared_label"] == f"production v{versions['production']}"
    rouge = next(s for s in refused["scores"] if s["metric"] == "rouge_l")
    assert rouge["incumbent"] != "-" and rouge["delta"].startswith("-")
    assert refused["actions"] == []  # a refused version can hold no stage

    lineage = dict(refused["lineage"])
    assert lineage["dataset version"] == "ds-ui"
    assert lineage["config hash"] and lineage["git sha"] and lineage["base model"]
    assert refused["dag_run"]["url"] == "/dags/finetune_model/runs/manual__ui-setup"
    assert refused["mlflow_url"] == (
        f"http://mlflow.example:5000/#/models/{model}/versions/{versions['refused']}"
    )

    staged = version_view(rows[versions["staging"]], model, LINKS, ALICE)
    assert staged["decision"] == "passed" and staged["failed"] == []
    assert [(a["action"], a["to"]) for a in staged["actions"]] == [("promote", "canary")]
    production = version_view(rows[versions["production"]], model, LINKS, ALICE)
    assert production["compared_label"] == "base model"
    assert [a["action"] for a in production["actions"]] == ["rollback"]

    html = render_registry(status(settings), ALICE, LINKS)
    assert "Promote to canary" in html and "Roll back production" in html
    assert 'name="csrf" value="form-token"' in html


def test_read_only_users_get_no_buttons_and_no_mlflow_link_without_its_url(registry_home):
    settings, _ = registry_home
    html = render_registry(status(settings), VIEWER, Links())
    assert "<form" not in html and "read-only" in html
    assert "MLflow model version" not in html
    assert "DAG run manual__ui-setup" in html  # the Airflow link needs no setting


def test_names_and_reasons_are_escaped(registry_home):
    settings, versions = registry_home
    promote(
        settings,
        to="canary",
        actor="<img src=x onerror=alert(1)>",
        reason="<script>alert('reason')</script>",
    )
    html = render_registry(status(settings), ALICE, LINKS)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#39;reason&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_a_hand_edited_tag_costs_only_what_it_held(registry_home):
    """Valid JSON of the wrong shape in one version's tags and one ledger entry: the rest of
    the page is drawn, and the damaged version says what it could not read."""
    settings, versions = registry_home
    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    model, damaged = settings.registered_model, versions["staging"]
    client.set_model_version_tag(model, damaged, tags.METRICS, '["not", "scores"]')
    client.set_model_version_tag(model, damaged, tags.GATE_INCUMBENT, '"production"')
    client.set_model_version_tag(model, damaged, tags.GATE_MARGINS, '{"rouge_l.threshold": "n/a"}')
    client.set_registered_model_tag(model, f"{tags.LEDGER_PREFIX}999999", '"not an entry"')

    state = status(settings)
    html = render_registry(state, ALICE, LINKS)
    rows = {row["version"]: row for row in state["versions"]}
    view = version_view(rows[damaged], model, LINKS, ALICE)
    assert any("unreadable" in note and "metrics" in note for note in view["notes"])
    assert view["decision"] == "passed" and dict(view["lineage"])["dataset version"] == "ds-ui"
    for note in view["notes"]:
        assert str(escape(note)) in html
    intact = version_view(rows[versions["refused"]], model, LINKS, ALICE)
    assert intact["notes"] == [] and intact["scores"]
    assert f'id="version-{versions["production"]}"' in html
    readable = [e for e in state["ledger"] if isinstance(e, dict) and e.get("action")]
    assert len(readable) == 5 and html.count('<td class="who">') >= len(readable)
    assert re.search(r"unreadable[^<]*(ledger|999999)", html)  # shown as damaged, not dropped


def test_the_mlflow_link_base_must_be_an_http_url(tmp_path):
    """The setting becomes an href: a ``javascript:`` (or any non-http) value is refused."""
    from modelyard.settings import Settings

    assert Settings(home=tmp_path, ui={"mlflow_ui_url": "https://mlflow.example"}).ui.mlflow_ui_url
    with pytest.raises(ValidationError, match="mlflow_ui_url"):
        Settings(home=tmp_path, ui={"mlflow_ui_url": "javascript:alert(1)"})


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"version": "\u00b2", "to": "canary"}, "needs a version number"),  # isdigit, not int
        ({"version": "\u0661\u0662", "to": "canary"}, "needs a version number"),  # Arabic 12
        ({"version": "9" * 5000, "to": "canary"}, "needs a version number"),  # past int limits
        ({"version": "2", "to": "canary", "reason": "ok\nforged line"}, "one line of printable"),
    ],
)
def test_a_bad_move_form_is_a_400_before_any_run_is_made(monkeypatch, form, says) -> None:
    """Before: a 500 (``"²".isdigit()`` holds, ``int("²")`` fails), a silent 12, or a run the
    library then refused."""
    from fastapi.testclient import TestClient

    from modelyard import registry_page

    made = []
    monkeypatch.setattr(registry_page, "_form_owner", lambda token: "alice")
    monkeypatch.setattr(registry_page, "trigger_move", lambda *a: made.append(a) or "run")
    app = registry_page.create_app()
    app.dependency_overrides[registry_page._viewer] = lambda: ALICE
    with TestClient(app) as client:
        answer = client.post("/actions", data={"action": "promote", "csrf": "t", **form})
    assert answer.status_code == 400 and says in answer.json()["detail"], answer.text
    assert made == []
