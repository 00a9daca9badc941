"""Loading a model for evaluation draws no progress bar: in an Airflow task, tqdm's stderr is
logged at ERROR level, so a successful ``evaluate`` looked like it had failed."""

from __future__ import annotations


def test_model_loading_writes_nothing_to_stderr(tiny_model, capsys):
    from modelyard.registry.artifacts import load_causal_lm

    capsys.readouterr()
    load_causal_lm(str(tiny_model))
    assert "Loading weights" not in capsys.readouterr().err
