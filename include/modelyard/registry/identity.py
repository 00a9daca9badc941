"""Who does a registry action: established at the edge, never taken from free text.

The CLI records the OS account running it (from the process's uid, not ``$USER``, which any
caller can set); a person the operator acts for is a separate, labelled ``on_behalf_of``. In
Airflow the actor is the person who triggered the run, and an approval's actor is whoever
answered the approval task; only runs that no person triggered fall back to
``airflow:<dag_id>``. Callers of the Python API are trusted code and pass the identity they
established the same way.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from typing import Any


def os_user() -> str:
    """The account this process runs as (``uid:N`` for a uid with no passwd entry)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # containers often run a bare uid
        return f"uid:{os.getuid()}"


def airflow_actor(context: Mapping[str, Any]) -> str:
    """The person who triggered this DAG run, else ``airflow:<dag_id>``."""
    dag_run = context["dag_run"]
    return getattr(dag_run, "triggering_user_name", None) or f"airflow:{dag_run.dag_id}"


def hitl_responder(answer: Mapping[str, Any] | None) -> str | None:
    """The user who answered a human-in-the-loop task (its XCom), if a person did."""
    user = (answer or {}).get("responded_by_user") or {}
    return user.get("name") or user.get("id") or None
