"""A minimal client for the Airflow REST API of a ``running_airflow`` instance."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path


class AirflowAPI:
    def __init__(self, base_url: str, airflow_home: Path, user: str = "admin") -> None:
        self.base_url = base_url
        passwords = airflow_home / "simple_auth_manager_passwords.json.generated"
        login = {"username": user, "password": json.loads(passwords.read_text())[user]}
        self.token = self._send("POST", "/auth/token", login, auth=False)["access_token"]

    def _send(self, method: str, path: str, body: dict | None = None, auth: bool = True):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=headers
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            raw = resp.read().decode()
        return json.loads(raw) if raw.lstrip().startswith(("{", "[")) else raw

    def get(self, path: str):
        return self._send("GET", path)

    def post(self, path: str, body: dict):
        return self._send("POST", path, body)

    def patch(self, path: str, body: dict):
        return self._send("PATCH", path, body)

    def wait_for(self, predicate, what: str, timeout: float = 240.0, every: float = 2.0):
        """Poll ``predicate()`` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result := predicate():
                return result
            time.sleep(every)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
