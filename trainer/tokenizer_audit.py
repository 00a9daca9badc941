"""Fail fast on tokenizer/model mismatches that otherwise surface as silent garbage after hours.

Checked before training: a chat template exists (the data is conversational), EOS exists (the
model must learn to stop), every token id fits in the embedding matrix, and padding does not reuse
EOS when another token can pad (labels of padded EOS would be masked and stopping never learned).
"""

from __future__ import annotations

import logging
from typing import Any

from trainer.config import ConfigError

log = logging.getLogger(__name__)


class TokenizerError(ConfigError):
    """The tokenizer does not fit the model or the data."""


def audit_tokenizer(tokenizer: Any, model: Any) -> None:
    """Raise ``TokenizerError`` on a mismatch; repair only the pad token, and say so."""
    if not getattr(tokenizer, "chat_template", None):
        raise TokenizerError(
            "tokenizer: no chat_template; the conversational data cannot be "
            "rendered (set tokenizer.chat_template on the base model)"
        )
    if tokenizer.eos_token_id is None:
        raise TokenizerError("tokenizer: no eos_token; the model could never learn to stop")
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise TokenizerError(
            f"tokenizer: {len(tokenizer)} tokens (incl. added special tokens) "
            f"but the model's embedding has {rows} rows"
        )
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            log.warning(
                "tokenizer: pad token %r missing or equal to eos; padding with %r",
                tokenizer.pad_token,
                tokenizer.unk_token,
            )
            tokenizer.pad_token = tokenizer.unk_token
        elif tokenizer.pad_token_id is None:
            log.warning("tokenizer: no pad or unk token; padding with eos")
            tokenizer.pad_token = tokenizer.eos_token
    ids = [
        i
        for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id)
        if i is not None
    ]
    if max(ids) >= rows:
        raise TokenizerError(
            f"tokenizer: special token id {max(ids)} is outside the model's embedding ({rows} rows)"
        )
