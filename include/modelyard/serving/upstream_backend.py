"""The ``openai`` backend: an upstream OpenAI-compatible server that loads LoRA adapters at runtime.

vLLM's API (``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve BASE --enable-lora``):
``POST /v1/load_lora_adapter {"lora_name", "lora_path"}`` answers 200, or 400 when the name is
already loaded or the adapter is unusable, 404 when no adapter is found at the path;
``POST /v1/unload_lora_adapter {"lora_name"}`` answers 200, or 404 for an unknown name; a chat
completion with ``model`` set to an adapter's name is answered by that adapter. ``lora_path`` is
a path on the upstream's disk: the gateway's model cache must be visible there under the same
path (a shared volume), as it is when both run on one host.
"""

from __future__ import annotations

import httpx

from modelyard.serving.backends import AdapterError, BackendError
from modelyard.serving.chat import Completion
from modelyard.settings import Settings


def _message(resp: httpx.Response) -> str:
    """The error text of a vLLM/OpenAI error body (both shapes), else the raw text."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:500]
    error = body.get("error", body) if isinstance(body, dict) else body
    return str(error.get("message", error) if isinstance(error, dict) else error)[:500]


class UpstreamBackend:
    # Adapters are checked by the upstream itself when it loads them (vLLM validates the
    # adapter against the model it serves), so the gateway checks no base model name.
    base_model = None

    def __init__(self, settings: Settings) -> None:
        serving = settings.serving
        self.url = serving.upstream_url.rstrip("/")
        key = serving.upstream_api_key
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=serving.upstream_timeout_seconds,
            headers={"Authorization": f"Bearer {key}"} if key else None,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self._names: set[str] = set()

    def prepare(self) -> None:
        """Nothing to load here; the upstream may come up after the gateway."""

    async def close(self) -> None:
        await self._client.aclose()

    def adapters(self) -> list[str]:
        return sorted(self._names)

    async def refresh(self) -> None:
        """Drop names the upstream's ``/v1/models`` no longer lists, so the watcher reloads them.

        An unreachable upstream changes nothing: an outage is not a reason to reload.
        """
        try:
            resp = await self._client.get("/v1/models")
            listed = {m["id"] for m in resp.json()["data"]} if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            listed = None
        if listed is not None:
            self._names &= listed

    async def _post(self, path: str, body: dict) -> httpx.Response:
        try:
            return await self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise BackendError(f"upstream {self.url} unreachable: {exc!r}", status=502) from exc

    async def load(self, name: str, path: str) -> None:
        try:
            resp = await self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})
        except BackendError as exc:
            raise AdapterError(str(exc), status=502) from exc
        # A gateway restarted in front of a running upstream finds its adapters still loaded;
        # a name is one immutable version, so "already loaded" is the state it asked for.
        if resp.status_code != 200 and "already been loaded" not in _message(resp):
            raise AdapterError(
                f"upstream refused adapter {name}: {_message(resp)}", status=resp.status_code
            )
        self._names.add(name)

    async def unload(self, name: str) -> None:
        try:
            resp = await self._post("/v1/unload_lora_adapter", {"lora_name": name})
        except BackendError as exc:
            raise AdapterError(str(exc), status=502) from exc
        self._names.discard(name)
        if resp.status_code not in (200, 404):  # 404: the upstream already forgot it
            raise AdapterError(f"upstream kept adapter {name}: {_message(resp)}", resp.status_code)

    async def complete(
        self, name: str, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> Completion:
        resp = await self._post(
            "/v1/chat/completions",
            {
                "model": name,
                "messages": messages,
                "max_tokens": max_tokens,
                "temperature": temperature,
            },
        )
        if resp.status_code != 200:
            status = 400 if resp.status_code == 400 else 502  # 400: the client's request
            raise BackendError(f"upstream answered {resp.status_code}: {_message(resp)}", status)
        body = resp.json()
        choice = body["choices"][0]
        usage = body.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=choice.get("finish_reason") or "stop",
        )
