"""The Airflow UI as people use it: Debian's Chromium (Playwright) against a real
``airflow standalone`` on the embedded home, holding a small registry (v1 production, v2
staged, v3 refused by the gate).

A person (``alice``, Airflow role "user") signs in through Airflow's login page, opens
Browse -> Model registry, promotes v2 to canary and production and rolls production back with
the page's buttons, and the page then shows her in the ledger, the rollback and the refused
version's failed checks; a read-only user (``victor``, role "viewer") sees no buttons and is
refused when posting anyway; every DAG's trigger form submits with its defaults.
"""

from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass
from urllib.parse import unquote

import pytest
from playwright.sync_api import Browser, FrameLocator, Page, expect

from modelyard.airflow_api import AirflowAPI, quoted
from modelyard.airflow_env import free_port, running_airflow
from modelyard.registry import status

pytestmark = [pytest.mark.airflow, pytest.mark.scheduler]
MLFLOW_UI = "http://mlflow.example:5000"
USERS = "admin:admin,alice:user,victor:viewer"
RUN_TIMEOUT_MS = 240_000  # a promote_model run under a scheduler on a busy 2-core box


@dataclass
class AirflowUI:
    settings: object
    url: str
    passwords: dict[str, str]
    versions: dict[str, str]
    admin: AirflowAPI

    def runs(self, dag_id: str) -> list[dict]:
        return self.admin.get(f"/api/v2/dags/{dag_id}/dagRuns", limit=100)["dag_runs"]


@pytest.fixture(scope="module")
def airflow_ui(request, browser, tmp_path_factory, tiny_model):  # no Chromium: no Airflow
    """`airflow standalone` on a home holding a copy of the template registry, three users.

    Airflow boots (a minute and more) while the registry is built: its DB lives in
    ``<home>/airflow``, the registry's stores are copied into the home once both are ready.
    """
    from modelyard import settings as settings_mod

    home = tmp_path_factory.mktemp("airflow-ui") / "home"
    with pytest.MonkeyPatch.context() as env, ExitStack() as stack:
        env.setenv("MODELYARD_HOME", str(home))
        env.setenv("MODELYARD_BASE_MODEL", str(tiny_model))
        env.setenv("MODELYARD_UI__MLFLOW_UI_URL", MLFLOW_UI)
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", USERS)
        settings_mod.get_settings.cache_clear()
        stack.callback(settings_mod.get_settings.cache_clear)
        settings = settings_mod.get_settings()
        airflow = running_airflow(settings, port=free_port())
        booting = stack.enter_context(ThreadPoolExecutor(1)).submit(airflow.__enter__)
        stack.callback(_stop, booting, airflow)
        template, versions = request.getfixturevalue("registry_template")
        url = booting.result()
        for store in ("mlflow", "data"):
            shutil.copytree(template / store, home / store)
        airflow_home = home / "airflow"
        passwords = json.loads(
            (airflow_home / "simple_auth_manager_passwords.json.generated").read_text()
        )
        admin = stack.enter_context(closing(AirflowAPI.login_embedded(url, airflow_home, "admin")))
        yield AirflowUI(settings, url, passwords, versions, admin)


def _stop(booting: Future, airflow) -> None:
    """Stop the Airflow once its boot is over (a failed boot has stopped its processes)."""
    if booting.exception() is None:
        airflow.__exit__(None, None, None)


@pytest.fixture
def sign_in(browser: Browser, airflow_ui: AirflowUI):
    """``sign_in(user)``: a fresh browser session logged in through Airflow's login page."""
    contexts = []

    def login(user: str) -> Page:
        context = browser.new_context(base_url=airflow_ui.url)
        contexts.append(context)
        page = context.new_page()
        page.goto("/modelyard/")  # no session yet: Airflow's login page, then back here
        page.get_by_label("Username").fill(user)
        page.get_by_label("Password").fill(airflow_ui.passwords[user])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/modelyard/")
        return page

    yield login
    for context in contexts:
        context.close()


def _registry_in_airflow(page: Page) -> FrameLocator:
    """Browse -> Model registry: the page inside Airflow's UI."""
    page.goto("/")
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Model registry").click()
    registry = page.frame_locator("iframe")
    expect(registry.locator("h1")).to_be_visible()
    return registry


def _move(page: Page, version: str, action: str, outcome: str) -> None:
    """Press a version's button; the page shows the promote_model run until it ends."""
    registry = _registry_in_airflow(page)
    registry.locator(f"#version-{version} button[data-action={action}]").click()
    expect(registry.locator("#run-state")).to_have_text(
        re.compile("success|failed"), timeout=RUN_TIMEOUT_MS
    )
    expect(registry.locator("#outcome")).to_have_text(outcome)


def test_a_person_promotes_and_rolls_back_from_the_registry_page(airflow_ui, sign_in):
    page = sign_in("alice")
    v = airflow_ui.versions
    model = airflow_ui.settings.registered_model
    registry = _registry_in_airflow(page)
    expect(registry.locator("#viewer")).to_have_text("alice")

    refused = registry.locator(f"#version-{v['refused']}")
    expect(refused.locator(".gate")).to_have_text("failed")
    expect(refused.locator(".failed-checks")).to_contain_text("rouge_l.threshold (margin -")
    expect(refused.locator(".compared-with")).to_have_text(f"production v{v['production']}")
    expect(refused.locator("button")).to_have_count(0)
    expect(refused.locator("a.dag-run")).to_have_attribute(
        "href", "/dags/finetune_model/runs/manual__ui-setup"
    )
    expect(refused.locator("a.mlflow")).to_have_attribute(
        "href", f"{MLFLOW_UI}/#/models/{model}/versions/{v['refused']}"
    )

    staged, production = v["staging"], v["production"]
    _move(page, staged, "promote", f"v{staged} now holds canary")
    _move(page, staged, "promote", f"v{staged} now holds production (was v{production})")
    _move(page, staged, "rollback", f"production rolled back from v{staged} to v{production}")

    runs = airflow_ui.runs("promote_model")
    assert len(runs) == 3 and {r["triggering_user_name"] for r in runs} == {"alice"}
    state = status(airflow_ui.settings)
    assert state["aliases"]["production"] == production
    assert state["previous_production"] == staged

    registry = _registry_in_airflow(page)
    expect(registry.locator("#previous-production")).to_have_text(f"v{staged}")
    expect(registry.locator(f"#version-{staged} .badge.rolled-back")).to_have_text("rolled back")
    rollback = registry.locator("#ledger tr.rollback")
    expect(rollback).to_have_count(1)
    expect(rollback.locator(".action")).to_contain_text("rollback")
    # The ledger names the person who pressed the buttons (the promote_model run's
    # triggering user), not the DAG or the OS account of the worker.
    expect(rollback.locator(".who")).to_have_text("alice")
    moves_by_alice = registry.locator("#ledger tr").filter(
        has=registry.locator("td.who", has_text=re.compile("^alice$"))
    )
    expect(moves_by_alice).to_have_count(3)


def test_read_only_users_see_no_buttons_and_cannot_post(airflow_ui, sign_in, browser):
    runs_before = len(airflow_ui.runs("promote_model"))
    viewer = sign_in("victor")
    registry = _registry_in_airflow(viewer)
    expect(registry.locator("#viewer")).to_have_text("victor")
    expect(registry.get_by_text("read-only")).to_be_visible()
    expect(registry.locator("form.action")).to_have_count(0)
    expect(registry.locator("button")).to_have_count(0)

    # Posting anyway, with the viewer's own valid form token: Airflow says no.
    token = registry.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = viewer.request.post("/modelyard/actions", form={"csrf": token, "action": "rollback"})
    assert refused.status == 403, refused.text()

    # A person who may act still needs a form token of her own (CSRF).
    alice = sign_in("alice")
    for csrf in ("", "forged", token):
        response = alice.request.post(
            "/modelyard/actions", form={"csrf": csrf, "action": "rollback"}
        )
        assert response.status == 403, (csrf, response.text())
    anonymous = browser.new_context(base_url=airflow_ui.url)
    try:
        response = anonymous.request.post(
            "/modelyard/actions", form={"csrf": token, "action": "rollback"}
        )
        assert response.status == 401
    finally:
        anonymous.close()
    assert len(airflow_ui.runs("promote_model")) == runs_before  # nothing was triggered


@pytest.mark.parametrize("dag_id", ["curate_dataset", "promote_model", "finetune_model"])
def test_every_dag_triggers_from_its_form_with_the_defaults(airflow_ui, sign_in, dag_id):
    """Needs optional Params to be nullable (an empty required field keeps Trigger disabled).
    The form is the subject: a paused DAG stays paused, so its run is created and never
    executed (finetune_model's would train until the module's Airflow stops)."""
    paused = airflow_ui.admin.get(f"/api/v2/dags/{dag_id}")["is_paused"]
    page = sign_in("alice")
    page.goto(f"/dags/{dag_id}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    if paused:  # the form offers "Unpause <dag> on trigger", checked
        dialog.get_by_text(re.compile(r"^Unpause .* on trigger$")).click()
    trigger = dialog.get_by_role("button", name="Trigger")
    expect(trigger).to_be_enabled()
    trigger.click()
    page.wait_for_url(f"**/dags/{dag_id}/runs/**")

    run_id = unquote(page.url.rsplit("/runs/", 1)[1].split("?")[0])
    run = airflow_ui.admin.get(f"/api/v2/dags/{dag_id}/dagRuns/{quoted(run_id)}")
    assert run["triggering_user_name"] == "alice"
    assert airflow_ui.admin.get(f"/api/v2/dags/{dag_id}")["is_paused"] == paused
    params = airflow_ui.admin.get(f"/api/v2/dags/{dag_id}/details")["params"]
    defaults = {name: param["value"] for name, param in params.items()}
    assert {name: run["conf"].get(name, value) for name, value in defaults.items()} == defaults
