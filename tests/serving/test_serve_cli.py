"""``modelyard serve`` refuses what it cannot serve with one line, before serving anything."""

from __future__ import annotations

import socket

import pytest

from modelyard import settings as settings_mod
from modelyard.cli import main
from tests.net import free_port


def _run(capsys, monkeypatch, *argv: str, **env: str) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings_mod.get_settings.cache_clear()
    try:
        assert main(["serve", *argv]) == 2
    finally:
        settings_mod.get_settings.cache_clear()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_serve_refuses_bad_setups_in_one_line(settings, capsys, monkeypatch, tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert f"cannot listen on 127.0.0.1:{port}" in _run(capsys, monkeypatch, "--port", port)

    err = _run(capsys, monkeypatch, MODELYARD_SERVING__CANARY_SHARE="1.5")
    assert "settings (MODELYARD_* environment): serving.canary_share: Input should be less " in err
    err = _run(
        capsys, monkeypatch, MODELYARD_SERVING__CANARY_SHARE="0.1", MODELYARD_SERVING__CANARY="x"
    )
    assert "serving.canary: Extra inputs are not permitted" in err
    monkeypatch.delenv("MODELYARD_SERVING__CANARY")
    limits = {
        "MODELYARD_SERVING__DEFAULT_MAX_TOKENS": "100",
        "MODELYARD_SERVING__MAX_TOKENS_LIMIT": "50",
    }
    assert "default_max_tokens (100) is above max_tokens_limit (50)" in _run(
        capsys, monkeypatch, **limits
    )
    for key in limits:
        monkeypatch.delenv(key)
    err = _run(capsys, monkeypatch, MODELYARD_SERVING__BACKEND="openai")
    assert "needs serving.upstream_url" in err
    err = _run(
        capsys,
        monkeypatch,
        "--port",
        str(free_port()),
        MODELYARD_SERVING__BACKEND="local",
        MODELYARD_BASE_MODEL=str(tmp_path / "no-such-model"),
    )
    assert f"cannot load base model {tmp_path / 'no-such-model'}" in err

    with pytest.raises(SystemExit):
        main(["serve", "--port", "70000"])
    assert "70000 is not a TCP port" in capsys.readouterr().err
