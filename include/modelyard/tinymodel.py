"""Build a tiny Llama base model in code, so nothing is fetched from a model hub.

The result is saved with ``save_pretrained`` and loaded back through the same
``AutoModelForCausalLM.from_pretrained`` path a real base model takes, so the demo and the
tests exercise the production code path, just with a few hundred thousand parameters.
"""

from __future__ import annotations

import json
from pathlib import Path

from modelyard.sampledata import corpus_text

CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{{ '<|' + m['role'] + '|>\n' + m['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]


def build_tiny_model(
    out_dir: Path,
    vocab_size: int = 512,
    hidden: int = 96,
    layers: int = 2,
    seed: int = 0,
    init_std: float = 0.1,
) -> Path:
    """Train a BPE tokenizer on the sample task's vocabulary and save a random-init Llama.

    ``init_std`` is well above Llama's 0.02: with tied embeddings this small, 0.02 caps every
    logit near 2, so a LoRA on the attention/MLP layers cannot push eval loss below ~4.6 however
    long it trains; at 0.1 it reaches < 1 within 100 CPU steps and generates the JSON template.

    Idempotent: an existing model directory (``config.json`` present) is left untouched.
    """
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus_text(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=SPECIAL_TOKENS[4:],
        model_max_length=256,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        initializer_range=init_std,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    provenance = {"built_by": "modelyard.tinymodel", "seed": seed}
    (tmp / "modelyard.json").write_text(json.dumps(provenance))
    tmp.rename(out_dir)
    return out_dir
