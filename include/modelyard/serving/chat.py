"""One chat completion from a causal LM: what the ``local`` backend and the pyfunc flavor share.

The gateway's ``local`` backend and the MLflow ``python_function`` flavor
(:mod:`modelyard.serving.pyfunc`) answer through the same :func:`complete`, so
``mlflow.pyfunc.load_model("models:/modelyard-assistant@production")`` gives the answers the
gateway gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn) or "length" (max_tokens reached)


class PromptTooLong(ValueError):
    """The prompt and the tokens asked for do not fit the model's context window."""


# No tokenizer averages this many characters a token: a longer prompt cannot fit the context
# and is refused before it is tokenized (a 10 MB body took minutes and gigabytes to refuse).
_MAX_CHARS_PER_TOKEN = 64


def complete(
    model, tokenizer, messages: list[dict[str, str]], max_tokens: int, temperature: float
) -> Completion:
    """Greedy at temperature 0, else sampled; the prompt is the tokenizer's chat template.
    ``PromptTooLong`` when prompt and ``max_tokens`` exceed the model's context window: past
    it a model answers garbage slowly, and the one model thread serves every user."""
    import torch

    context = getattr(model.config, "max_position_embeddings", None)
    chars = sum(len(m["content"]) for m in messages)
    if context and chars > context * _MAX_CHARS_PER_TOKEN:
        raise PromptTooLong(
            f"the prompt has {chars} characters: far beyond the model's context of {context} tokens"
        )
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    prompt_tokens = int(enc["input_ids"].shape[1])
    if context and prompt_tokens + max_tokens > context:
        raise PromptTooLong(
            f"the prompt is {prompt_tokens} tokens; with max_tokens {max_tokens} that exceeds "
            f"the model's context of {context} tokens"
        )
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
        prompt_tokens=prompt_tokens,
        completion_tokens=len(new),
        finish_reason="stop" if ended or len(new) < max_tokens else "length",
    )
