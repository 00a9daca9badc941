"""One chat completion from a causal LM, and the MLflow ``python_function`` flavor built on it.

The gateway's ``local`` backend and the pyfunc flavor answer through the same :func:`complete`,
so ``mlflow.pyfunc.load_model("models:/modelyard-assistant@production")`` gives the answers the
gateway gives. The flavor is logged as MLflow "models from code" (``pyfunc_model.py``): MLflow 3
refuses to unpickle models by default, and a code file names the class instead of freezing it.
The base model is referenced by name/path in the model config, never copied: a version is its
adapter (a few MB), loaded onto the base at ``load_context``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.models import Model
from pydantic import BaseModel, Field, field_validator

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
ADAPTER_ARTIFACT = "adapter"
ROLES = ("system", "user", "assistant")


class ChatMessage(BaseModel):
    """A turn as the pyfunc flavor takes it (plain types: MLflow derives the signature)."""

    role: str
    content: str

    @field_validator("role")
    @classmethod
    def _known_role(cls, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        return role


class ChatInput(BaseModel):
    """One row of pyfunc input: a conversation and how much to generate."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int = Field(64, ge=1, le=32_768)
    temperature: float = Field(0.0, ge=0.0, le=2.0)


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn) or "length" (max_tokens reached)


def complete(
    model, tokenizer, messages: list[dict[str, str]], max_tokens: int, temperature: float
) -> Completion:
    """Greedy at temperature 0, else sampled; the prompt is the tokenizer's chat template."""
    import torch

    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    sampling: dict[str, Any] = (
        {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    )
    with torch.inference_mode():
        out = model.generate(
            **enc, max_new_tokens=max_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
        )
    new = out[0, enc["input_ids"].shape[1] :].tolist()
    ended = bool(new) and new[-1] == tokenizer.eos_token_id
    return Completion(
        text=tokenizer.decode(new, skip_special_tokens=True).strip(),
        prompt_tokens=int(enc["input_ids"].shape[1]),
        completion_tokens=len(new),
        finish_reason="stop" if ended or len(new) < max_tokens else "length",
    )


class ChatModel(mlflow.pyfunc.PythonModel):
    """A registered version as MLflow sees it: its adapter on the referenced base model.

    Each input row is a conversation (``{"messages": [...], "max_tokens"?, "temperature"?}``);
    each output is the assistant's reply.
    """

    def load_context(self, context) -> None:
        from modelyard.registry.artifacts import load_causal_lm

        config = context.model_config
        self._model, self._tokenizer = load_causal_lm(
            config["base_model"], config.get("base_revision"), context.artifacts[ADAPTER_ARTIFACT]
        )

    def predict(self, model_input: list[ChatInput], params: dict | None = None) -> list[str]:
        return [
            complete(
                self._model,
                self._tokenizer,
                [m.model_dump() for m in row.messages],
                row.max_tokens,
                row.temperature,
            ).text
            for row in model_input
        ]


def _pinned(package: str) -> str:
    from importlib.metadata import version

    return f"{package}=={version(package).split('+')[0]}"


def save_pyfunc(
    path: Path, mlflow_model: Model, adapter_dir: Path, base_model: str, base_revision: str | None
) -> str:
    """Write an MLflow model directory at ``path`` with the pyfunc flavor added to ``mlflow_model``.

    Returns where the adapter landed, relative to ``path``. Requirements are pinned from this
    environment rather than inferred (inference loads the model in a subprocess).
    """
    mlflow.pyfunc.save_model(
        str(path),
        python_model=str(PYFUNC_CODE),
        artifacts={ADAPTER_ARTIFACT: str(adapter_dir)},
        mlflow_model=mlflow_model,
        model_config={"base_model": base_model, "base_revision": base_revision},
        pip_requirements=[_pinned(p) for p in ("mlflow", "torch", "transformers", "peft")],
    )
    return mlflow_model.flavors["python_function"]["artifacts"][ADAPTER_ARTIFACT]["path"]
