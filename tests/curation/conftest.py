"""Curation fixtures: an isolated storage root."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.settings import Settings


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose storage is a fresh dir (no tiny model needed for curation)."""
    from modelyard import settings as settings_mod

    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    settings_mod.get_settings.cache_clear()
    yield settings_mod.get_settings()
    settings_mod.get_settings.cache_clear()
