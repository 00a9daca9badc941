"""What a DAG run's conf may hold.

Airflow merges a trigger's conf into the run's params whatever its keys, so a misspelt key
(``max_step``, ``versoin``) would leave the Param it meant at its default without a word:
``max_steps`` trains the default, ``version`` promotes whichever version holds the stage.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
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
