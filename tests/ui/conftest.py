"""A small registry built once per session, and Debian's Chromium for the browser tests.

The registry (three versions, as training and promotion leave them) is built with the real
evaluation and registry code into a template home; each test gets its own copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from evaluation.helpers import (  # noqa: F401  (shared session fixtures)
    eval_sample,
    good_adapter,
    publish_dataset,
    train_result,
    weak_adapter,
)

CHROMIUM = Path("/usr/bin/chromium")
#: Chromium flags for a headless run in a container: no sandbox (no user namespaces), no GPU,
#: nothing that phones home or updates itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def build_registry(home: Path, tiny_model: Path, good: Path, weak: Path, sample: dict) -> dict:
    """v1 production (gated against the base model), v2 staging (the same good weights trained
    again), v3 refused by the gate against production v1 (a 1-step adapter)."""
    from modelyard.evaluation import evaluate_candidate
    from modelyard.registry import promote, register_candidate
    from modelyard.settings import Settings

    settings = Settings(home=home, base_model=str(tiny_model))
    # 8 held-out records: enough for the gate to tell a trained adapter from a 1-step one.
    manifest = publish_dataset(settings.storage, "ds-ui", sample["train"], sample["eval"][:8])
    ctx = {"dag_id": "finetune_model", "run_id": "manual__ui-setup"}
    good_report = evaluate_candidate(
        train_result(settings, good, tiny_model, "v1"), settings, manifest
    )
    v1 = register_candidate(
        train_result(settings, good, tiny_model, "v1"), good_report, manifest, ctx, settings
    )
    promote(settings, to="canary", actor="setup", reason="setup")
    promote(settings, to="production", actor="setup", reason="setup")
    v2 = register_candidate(
        train_result(settings, good, tiny_model, "v2"), good_report, manifest, ctx, settings
    )
    weak_run = train_result(settings, weak, tiny_model, "v3")
    weak_report = evaluate_candidate(weak_run, settings, manifest)
    v3 = register_candidate(weak_run, weak_report, manifest, ctx, settings)
    assert (v1["staging"], v2["staging"], v3["staging"]) == (True, True, False)
    return {"production": v1["version"], "staging": v2["version"], "refused": v3["version"]}


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory, tiny_model, good_adapter, weak_adapter, eval_sample):  # noqa: F811
    home = tmp_path_factory.mktemp("registry-template") / "home"
    versions = build_registry(home, tiny_model, good_adapter, weak_adapter, eval_sample)
    return home, versions


@pytest.fixture
def registry_home(registry_template, tmp_path, monkeypatch, tiny_model):
    """Settings on a private copy of the template registry (MLflow store, storage)."""
    from modelyard import settings as settings_mod

    template, versions = registry_template
    home = tmp_path / "home"
    shutil.copytree(template, home)
    monkeypatch.setenv("MODELYARD_HOME", str(home))
    monkeypatch.setenv("MODELYARD_BASE_MODEL", str(tiny_model))
    settings_mod.get_settings.cache_clear()
    yield settings_mod.get_settings(), versions
    settings_mod.get_settings.cache_clear()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (no browser download)."""
    executable = CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")
    if not executable:
        pytest.skip(
            "no Chromium: /usr/bin/chromium is absent and none is on PATH "
            "(`apt-get install -y chromium`; .ci/run installs it)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()
