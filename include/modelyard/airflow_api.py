"""A small client for Airflow's public REST API (``/api/v2``), authenticated by one JWT.

Two callers, two identities: ``modelyard backfill`` logs in with a password
(:meth:`AirflowAPI.login`); the registry page forwards the logged-in user's own token, so every
DAG run it creates is triggered *by that person* (``DagRun.triggering_user_name``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx


class AirflowAPIError(RuntimeError):
    """A refused or failed API call; the message is one line (method, path, status, detail)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def quoted(run_id: str) -> str:
    """A DAG run id as a path segment (manual run ids hold ``:`` and ``+``)."""
    return quote(run_id, safe="")


class AirflowAPI:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    @classmethod
    def login(cls, base_url: str, username: str, password: str) -> AirflowAPI:
        """A client holding a token from ``POST /auth/token`` (SimpleAuthManager, FAB, ...)."""
        try:
            resp = httpx.post(
                f"{base_url.rstrip('/')}/auth/token",
                json={"username": username, "password": password},
                timeout=30.0,
            )
        except httpx.HTTPError as exc:
            raise AirflowAPIError(0, f"cannot reach Airflow at {base_url}: {exc}") from None
        if resp.status_code >= 400:
            raise AirflowAPIError(
                resp.status_code, f"Airflow at {base_url} refused the login of {username!r}"
            )
        return cls(base_url, resp.json()["access_token"])

    @classmethod
    def login_embedded(cls, base_url: str, airflow_home: Path, username: str) -> AirflowAPI:
        """Log in with the password SimpleAuthManager generated for ``username`` in the home."""
        passwords = airflow_home / "simple_auth_manager_passwords.json.generated"
        try:
            password = json.loads(passwords.read_text())[username]
        except (OSError, ValueError, KeyError):
            raise AirflowAPIError(
                0, f"no password for Airflow user {username!r} in {passwords}"
            ) from None
        return cls.login(base_url, username, password)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AirflowAPIError(0, f"{method} {path}: Airflow unreachable: {exc}") from None
        if resp.status_code >= 400:
            raise AirflowAPIError(
                resp.status_code, f"{method} {path}: {resp.status_code} {_detail(resp)}"
            )
        return resp.json() if resp.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: dict) -> Any:
        return self.request("POST", path, json=body)

    def patch(self, path: str, body: dict) -> Any:
        return self.request("PATCH", path, json=body)

    def close(self) -> None:
        self._http.close()

    def task_error(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str | None:
        """The exception a failed task attempt raised (``Type: message``), read from its log."""
        try:
            log = self.get(
                f"/api/v2/dags/{dag_id}/dagRuns/{quoted(run_id)}/taskInstances/{task_id}"
                f"/logs/{max(try_number, 1)}"
            )
        except AirflowAPIError:
            return None
        for event in reversed(log.get("content", []) if isinstance(log, dict) else []):
            for error in event.get("error_detail") or []:
                if not error.get("is_cause"):
                    return f"{error.get('exc_type')}: {error.get('exc_value')}"
        return None


def _detail(resp: httpx.Response) -> str:
    try:
        detail = resp.json().get("detail", resp.text)
    except ValueError:
        detail = resp.text
    return " ".join(str(detail).split())[:300]
