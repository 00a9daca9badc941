"""What generates: a backend holds one base model and serves adapters on it by name.

Two implementations share this interface: ``local`` (transformers + PEFT in this process,
:mod:`modelyard.serving.local_backend`) and ``openai`` (an upstream OpenAI-compatible server
with runtime LoRA loading such as vLLM, :mod:`modelyard.serving.upstream_backend`). The gateway
above them only routes, logs and swaps; it never knows which one it talks to.
"""

from __future__ import annotations

from typing import Protocol

from modelyard.serving.chat import Completion
from modelyard.settings import Settings


class BackendError(Exception):
    """A generation failed; ``status`` is what the gateway answers (500, or 502 upstream)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


class AdapterError(Exception):
    """An adapter could not be loaded or unloaded; ``status`` follows vLLM (400 or 404)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Backend(Protocol):
    base_model: str | None  # what adapters must be trained on; None: the upstream checks

    def prepare(self) -> None:
        """Load the base model; called once, before serving, so a bad one fails the start."""

    async def close(self) -> None: ...

    async def load(self, name: str, path: str) -> None:
        """Make the adapter at ``path`` servable as ``name``; loading a name twice is an error."""

    async def unload(self, name: str) -> None:
        """Forget adapter ``name``; unknown names raise :class:`AdapterError` (404)."""

    def adapters(self) -> list[str]:
        """Names of the adapters this backend serves."""

    async def refresh(self) -> None:
        """Forget adapters the backend no longer has (an upstream restarted); each poll."""

    async def complete(
        self, name: str, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> Completion: ...


def make_backend(settings: Settings) -> Backend:
    if settings.serving.backend == "openai":
        from modelyard.serving.upstream_backend import UpstreamBackend

        if not settings.serving.upstream_url:
            raise ValueError(
                "serving.backend=openai needs serving.upstream_url "
                "(MODELYARD_SERVING__UPSTREAM_URL), e.g. http://127.0.0.1:8001"
            )
        return UpstreamBackend(settings)
    from modelyard.serving.local_backend import LocalBackend

    return LocalBackend(settings.default_base_model)
