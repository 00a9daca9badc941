"""Pure-PyTorch stand-in for TRL's Triton log-prob kernel, for machines without Triton.

TRL 1.15's SFTTrainer always computes its loss through a fused LM head whose kernel is written in
Triton, which ships with the CUDA builds of PyTorch only: on a CPU-only box TRL leaves the kernel
as ``None`` and the first training step fails. This stand-in materialises the ``[N, V]`` logits,
which is affordable at the sizes anyone trains on a CPU, and returns the same per-token outputs.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


class TorchLogProb:
    """Same call signature and outputs as ``trl.kernels.ChunkedLogProbFunction.apply``."""

    @staticmethod
    def apply(
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        temperature: float,
        chunk_size: int,
        final_logit_softcapping: float | None = None,
        logit_scale: float = 1.0,
        outputs: tuple[str, ...] = (),
    ) -> tuple[torch.Tensor | None, ...]:
        logits = F.linear(hidden, weight, bias).float() * logit_scale
        if final_logit_softcapping is not None:
            logits = final_logit_softcapping * torch.tanh(logits / final_logit_softcapping)
        logits = logits / temperature
        logp = logits.log_softmax(-1)
        log_probs = logp.gather(-1, targets[:, None]).squeeze(-1)
        wanted = set(outputs)
        entropy = -(logp.exp() * logp).sum(-1) if "entropy" in wanted else None
        log_sum_sq = torch.logsumexp(2 * logp, -1) if "log_sum_sq_probs" in wanted else None
        mean_logits = logits.mean(-1) if "mean_logits" in wanted else None
        is_top1 = (logits.argmax(-1) == targets).float() if "is_top1" in wanted else None
        return log_probs, entropy, log_sum_sq, mean_logits, is_top1


def ensure_logprob_kernel() -> None:
    """Install the stand-in only where TRL could not import its Triton kernel."""
    from trl.trainer import utils

    if utils._ChunkedLogProbFunction is None:
        log.info("Triton unavailable: computing TRL's per-token log-probs in plain PyTorch")
        utils._ChunkedLogProbFunction = TorchLogProb
