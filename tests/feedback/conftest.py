"""Feedback fixtures: a fresh home (storage and request log)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.settings import Settings


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose home (storage, request log) is a fresh dir; no model needed."""
    from modelyard import settings as settings_mod

    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    settings_mod.get_settings.cache_clear()
    yield settings_mod.get_settings()
    settings_mod.get_settings.cache_clear()
