"""The HTTP shapes the gateway speaks: OpenAI chat completions, feedback, vLLM's LoRA endpoints.

Requests are validated here, so a bad one is answered with one line before any model is touched.
Fields OpenAI defines that the gateway does not implement are refused by name rather than
silently ignored (a client asking for ``n=3`` must not get one answer back); fields it does not
know at all are ignored, as OpenAI-compatible servers do, so newer clients keep working.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)


def _unicode(text: str) -> str:
    """JSON may escape a lone surrogate (``"\\ud800"``): valid JSON, not Unicode text. Refused
    here, it never reaches a tokenizer (a 500) or the request log (whose batch it would sink)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text holding a lone surrogate escape is not Unicode text") from None
    return text


Text = Annotated[str, AfterValidator(_unicode)]


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    """One chat turn; ``content`` is text or a list of text parts (OpenAI's two shapes)."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    @model_validator(mode="after")
    def _unicode_content(self) -> Message:
        _unicode(self.text())  # after the shape is known: one message for both shapes
        return self

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def plain(self) -> dict[str, str]:
        """As a chat template takes it; OpenAI's ``developer`` role is a system prompt."""
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text()}


# OpenAI fields with a meaning the gateway does not provide; each is refused with its name.
_UNSUPPORTED = {
    "stream": lambda v: bool(v),
    "n": lambda v: v not in (None, 1),
    "tools": lambda v: bool(v),
    "functions": lambda v: bool(v),
    "logprobs": lambda v: bool(v),
}


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``; ``store: false`` keeps the texts out of the request log."""

    model_config = ConfigDict(extra="allow")

    model: Text
    messages: list[Message] = Field(min_length=1)
    # Strict: JSON's true is not 1 token, "5" is not a number, NaN is not a temperature.
    max_tokens: int | None = Field(None, ge=1, strict=True)  # None: the gateway's default
    temperature: float | None = Field(None, ge=0.0, le=2.0, strict=True, allow_inf_nan=False)
    user: Text | None = Field(None, max_length=256)
    store: bool = Field(True, strict=True)
    max_completion_tokens: int | None = Field(None, ge=1, strict=True)

    @model_validator(mode="after")
    def _supported(self) -> ChatCompletionRequest:
        extra = self.model_extra or {}
        for name, unsupported in _UNSUPPORTED.items():
            if name in extra and unsupported(extra[name]):
                raise ValueError(f"{name}={extra[name]!r} is not supported by this gateway")
        return self

    def token_budget(self, default: int, limit: int) -> int:
        wanted = self.max_completion_tokens or self.max_tokens or default
        if wanted > limit:
            raise ValueError(f"max_tokens {wanted} is above this gateway's limit of {limit}")
        return wanted


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: a thumbs up (1) or down (-1) on one response, maybe a correction."""

    model_config = ConfigDict(extra="forbid")

    response_id: Text = Field(min_length=1, max_length=64)
    rating: Literal[1, -1]
    correction: Text | None = Field(None, max_length=100_000)

    @field_validator("rating", mode="before")
    @classmethod
    def _integer_rating(cls, rating: Any) -> Any:
        if type(rating) is not int:  # JSON's true and 1.0 are not a thumbs up
            raise ValueError("rating is 1 (thumbs up) or -1 (thumbs down), an integer")
        return rating


class LoadLoraRequest(BaseModel):
    """vLLM's ``POST /v1/load_lora_adapter`` body."""

    lora_name: Text = Field(min_length=1, max_length=200)
    lora_path: Text = Field(min_length=1)


class UnloadLoraRequest(BaseModel):
    """vLLM's ``POST /v1/unload_lora_adapter`` body (``lora_int_id`` is accepted and unused)."""

    lora_name: Text = Field(min_length=1, max_length=200)
    lora_int_id: int | None = None


def error_body(message: str, kind: str, code: int | str | None = None) -> dict[str, Any]:
    """OpenAI's error shape, which the ``openai`` client turns into its exception types."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def completion_body(
    response_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
