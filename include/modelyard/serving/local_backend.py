"""The ``local`` backend: one base model in this process, every served version an adapter on it.

PEFT's multi-adapter API holds the production and canary adapters on the same base
(``load_adapter`` / ``set_adapter`` / ``delete_adapter``). ``set_adapter`` switches state shared
by the whole model, so every model operation (generate, load, delete) runs on one dedicated
thread in submission order: an adapter is never switched or removed under a running
generation, and the event loop never waits on the model. On two CPU cores one generation at a
time is also the fastest schedule (concurrent generates only fight over the same cores).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from modelyard.serving.backends import AdapterError, BackendError
from modelyard.serving.chat import Completion, PromptTooLong, complete


class LocalBackend:
    def __init__(self, base_model: str) -> None:
        self.base_model = base_model
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        self._base = None
        self._model = None  # the PeftModel, once a first adapter is on the base
        self._tokenizer = None
        self._names: set[str] = set()
        self._loading: set[str] = set()
        self._active: str | None = None  # adapter set on the model; model thread only

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def prepare(self) -> None:
        self._load_base()

    async def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    def adapters(self) -> list[str]:
        return sorted(self._names)

    async def refresh(self) -> None:
        """Nothing to do: adapters live in this process."""

    def _load_base(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._base = AutoModelForCausalLM.from_pretrained(self.base_model).eval()
        self._model = None
        self._tokenizer = AutoTokenizer.from_pretrained(self.base_model)
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token

    async def load(self, name: str, path: str) -> None:
        if name in self._names or name in self._loading:
            raise AdapterError(f"The lora adapter '{name}' has already been loaded.")
        self._loading.add(name)
        try:
            # Reading and parsing happen off the model thread; only the injection onto the
            # model waits its turn between two generations.
            await asyncio.to_thread(_check_adapter, name, path)
            await self._run(self._load, name, path)
            self._names.add(name)
        finally:
            self._loading.discard(name)

    def _load(self, name: str, path: str) -> None:
        from peft import PeftModel

        self._active = None  # PEFT may switch the active adapter while adding one
        try:
            if self._model is None:
                self._model = PeftModel.from_pretrained(self._base, path, adapter_name=name).eval()
            else:
                self._model.load_adapter(path, adapter_name=name)
        except Exception as exc:  # noqa: BLE001 - e.g. shapes of another base model
            self._undo(name)
            raise AdapterError(f"cannot load adapter {name} onto {self.base_model}: {exc}") from exc

    def _undo(self, name: str) -> None:
        """Take a half-injected adapter back out; a failed first one leaves a fresh base."""
        if self._model is None or not self._names:
            self._load_base()
        elif name in self._model.peft_config:
            self._model.delete_adapter(name)

    async def unload(self, name: str) -> None:
        if name not in self._names:
            raise AdapterError(f"The lora adapter '{name}' cannot be found.", status=404)
        self._names.discard(name)
        await self._run(self._delete, name)

    def _delete(self, name: str) -> None:
        self._active = None  # PEFT switches to another adapter when the active one goes
        self._model.delete_adapter(name)

    async def complete(
        self, name: str, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> Completion:
        if name not in self._names:
            raise BackendError(f"adapter {name} is not loaded", status=404)
        return await self._run(self._complete, name, messages, max_tokens, temperature)

    def _complete(
        self, name: str, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> Completion:
        import jinja2

        if self._active != name:  # set_adapter walks every LoRA layer: only on a change
            self._model.set_adapter(name)
            self._active = name
        try:
            return complete(self._model, self._tokenizer, messages, max_tokens, temperature)
        except jinja2.TemplateError as exc:
            raise BackendError(f"the chat template refused these messages: {exc}", 400) from exc
        except PromptTooLong as exc:
            raise BackendError(str(exc), 400) from exc
        except Exception as exc:  # noqa: BLE001 - one line to the client, the request is logged
            raise BackendError(f"generation failed: {type(exc).__name__}: {exc}") from exc


def _check_adapter(name: str, path: str) -> None:
    """Read and parse the adapter before the model is touched: a bad one is refused whole."""
    from peft import PeftConfig
    from peft.utils import load_peft_weights

    if not (Path(path) / "adapter_config.json").is_file():
        raise AdapterError(f"No adapter found at {path}", status=404)
    try:
        PeftConfig.from_pretrained(path)
        load_peft_weights(path, device="cpu")
    except Exception as exc:  # noqa: BLE001 - any unreadable adapter is the same refusal
        raise AdapterError(f"cannot read adapter {name} at {path}: {exc}") from exc
