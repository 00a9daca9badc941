"""What a DAG run brings: the keys its conf may hold, the day its data interval names.

Airflow merges a trigger's conf into the run's params whatever its keys, so a misspelt key
(``max_step``, ``versoin``) would leave the Param it meant at its default without a word:
``max_steps`` trains the default, ``version`` promotes whichever version holds the stage.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any


def unknown_keys(params: Mapping[str, Any], known: Iterable[str]) -> str | None:
    """One line naming the keys of ``params`` that no Param declares (with the likely meant
    one), or None when there are none."""
    known = sorted(known)
    unknown = sorted(set(params) - set(known))
    if not unknown:
        return None
    said = []
    for key in unknown:
        guess = difflib.get_close_matches(key, known, n=1)
        said.append(f"{key} (did you mean {guess[0]}?)" if guess else key)
    return f"unknown conf key(s): {', '.join(said)}; known: {', '.join(known)}"


def run_partition(data_interval_start: datetime | None) -> str:
    """The raw partition (a UTC day) a ``curate_dataset`` or ``harvest_feedback`` run works
    on: the day its data interval starts. Not ``ds``: a run triggered with logical date D
    covers [D-1, D) (Airflow infers the interval before D), so its ``ds`` is a day that has
    not ended, and curation would wait for one harvest while the harvest wrote another."""
    if data_interval_start is None:
        raise ValueError(
            "this run has no data interval to name a day: trigger it with a logical date (the "
            "day after the partition) or backfill the dates (modelyard backfill)"
        )
    return data_interval_start.date().isoformat()


def ended_day(day: str, today: date | None = None) -> str:
    """``day`` when it is a real ``YYYY-MM-DD`` date that has ended (UTC), else ValueError.

    A partition of today or later is still being written (or is someone's typo): curated, it
    would publish half a day as that date's version and become the newest data to train on.
    """
    today = today or datetime.now(UTC).date()
    try:
        parsed = date.fromisoformat(day) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", day) else None
    except ValueError:  # 2026-02-30
        parsed = None
    if parsed is None:
        raise ValueError(f"partition {day!r} is not a date (YYYY-MM-DD)")
    if parsed >= today:
        raise ValueError(
            f"partition {day} has not ended yet (UTC today is {today}): curate a day after it ends"
        )
    return day
