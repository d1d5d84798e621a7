"""Losses computed only where they count, a chunk of the vocabulary projection at a time.

The hidden states of supervised positions are gathered first (prompt tokens never reach
the output layer), then projected onto the vocabulary in chunks of ``chunk`` positions
under activation checkpointing: only one ``[chunk × vocab]`` block of logits exists at any
time, in the forward pass and in the backward pass. Full ``[tokens × vocab]`` logits are
never materialised.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

__all__ = ["token_logprobs", "sft_loss_sums", "dpo_loss", "sequence_logprobs"]


def _chunk(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = F.linear(hidden, weight, bias).float()
    logprob = logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    correct = (logits.argmax(dim=-1) == targets).detach()
    return logprob, correct


def token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                   bias: torch.Tensor | None = None, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each target token, and whether it was the argmax.

    Args:
        hidden: ``[N, H]`` hidden states of the positions to score.
        weight: ``[V, H]`` output projection (the language-model head).
        targets: ``[N]`` token ids.
    """
    if hidden.shape[0] == 0:
        return hidden.new_zeros(0, dtype=torch.float32), torch.zeros(0, dtype=torch.bool, device=hidden.device)
    logprobs, corrects = [], []
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    for start in range(0, hidden.shape[0], chunk):
        h, t = hidden[start:start + chunk], targets[start:start + chunk]
        if needs_grad:
            lp, ok = checkpoint(_chunk, h, weight, bias, t, use_reentrant=False)
        else:
            lp, ok = _chunk(h, weight, bias, t)
        logprobs.append(lp)
        corrects.append(ok)
    return torch.cat(logprobs), torch.cat(corrects)


def sft_loss_sums(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                  bias: torch.Tensor | None = None, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of negative log-likelihood, number of correct argmax predictions) over the targets.

    The caller divides by the step's total number of supervised tokens, so micro-batches
    and ranks combine into exactly the token-mean of the whole step.
    """
    logprob, correct = token_logprobs(hidden, weight, targets, bias=bias, chunk=chunk)
    return -logprob.sum(), correct.sum()


def sequence_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, segments: torch.Tensor,
                      n_sequences: int, *, bias: torch.Tensor | None = None, chunk: int = 1024) -> torch.Tensor:
    """Sum of target log-probabilities per sequence (``segments`` maps targets to sequences)."""
    logprob, _ = token_logprobs(hidden, weight, targets, bias=bias, chunk=chunk)
    out = logprob.new_zeros(n_sequences)
    return out.index_add(0, segments, logprob)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, Any]]:
    """The sigmoid DPO loss (Rafailov et al. 2023), summed over pairs, with reward statistics."""
    chosen_reward = beta * (policy_chosen - ref_chosen)
    rejected_reward = beta * (policy_rejected - ref_rejected)
    margin = chosen_reward - rejected_reward
    loss = -F.logsigmoid(margin).sum()
    stats = {"reward_margin_sum": float(margin.detach().sum()), "reward_accuracy_sum": float((margin > 0).sum()),
             "chosen_reward_sum": float(chosen_reward.detach().sum()),
             "rejected_reward_sum": float(rejected_reward.detach().sum())}
    return loss, stats
