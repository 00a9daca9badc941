"""The MLflow ``python_function`` flavor every registered version carries.

Logged as MLflow "models from code" (``pyfunc_model.py``): MLflow 3 refuses to unpickle models
by default, and a code file names the class instead of freezing it. The base model is referenced
by name/path in the model config, never copied: a version is its adapter (a few MB), loaded onto
the base at ``load_context``. Loading needs this package importable (``--env-manager local``, or
an environment with modelyard installed).
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
from mlflow.models import Model
from pydantic import BaseModel, Field, field_validator

from modelyard.serving.chat import complete

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
