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
