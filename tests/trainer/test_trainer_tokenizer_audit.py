"""The tokenizer audit fails fast on mismatches and repairs only the pad token."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer.tokenizer_audit import TokenizerError, audit_tokenizer


@pytest.fixture
def pair(tiny_model):
    return (
        AutoTokenizer.from_pretrained(tiny_model),
        AutoModelForCausalLM.from_pretrained(tiny_model),
    )


def test_the_tiny_model_passes_untouched(pair):
    tokenizer, model = pair
    audit_tokenizer(tokenizer, model)
    assert tokenizer.pad_token == "<pad>"


def test_missing_chat_template(pair):
    tokenizer, model = pair
    tokenizer.chat_template = None
    with pytest.raises(TokenizerError, match="^tokenizer: no chat_template"):
        audit_tokenizer(tokenizer, model)


def test_added_special_token_without_embedding_row(pair):
    tokenizer, model = pair
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|tool|>"]})
    with pytest.raises(TokenizerError, match=r"^tokenizer: \d+ tokens .* embedding has \d+ rows"):
        audit_tokenizer(tokenizer, model)


def test_pad_equal_to_eos_is_moved_to_unk(pair):
    tokenizer, model = pair
    tokenizer.pad_token = tokenizer.eos_token
    audit_tokenizer(tokenizer, model)
    assert tokenizer.pad_token == tokenizer.unk_token != tokenizer.eos_token
