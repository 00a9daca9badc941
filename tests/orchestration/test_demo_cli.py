"""`modelyard demo`'s options are checked before it builds or starts anything."""

from __future__ import annotations

import pytest

from modelyard.cli import main


@pytest.mark.parametrize("steps", ["0", "-5", "ten"])
def test_demo_refuses_a_step_count_before_doing_anything(steps, capsys) -> None:
    """0 used to mean "the default" and -5 failed only after the tiny model and a backfill."""
    with pytest.raises(SystemExit) as exit_:
        main(["demo", f"--max-steps={steps}"])
    assert exit_.value.code == 2 and "--max-steps" in capsys.readouterr().err
