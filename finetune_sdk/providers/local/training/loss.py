"""Losses computed only where they count, a chunk of the vocabulary projection at a time.

The hidden states of supervised positions are gathered first (prompt tokens never reach
the output layer), then projected onto the vocabulary in chunks of ``chunk`` positions:
only one ``[chunk × vocab]`` block of logits exists at any time, in the forward pass and
in the backward pass. Full ``[tokens × vocab]`` logits are never materialised.

Two ways to get gradients, chosen by whether the output layer trains:

* Frozen head (LoRA, the default): each token's log-probability depends on its own hidden
  state only, so its gradient ``d logp_i / d h_i = (onehot_i - softmax_i) @ W`` is computed
  in the forward pass while the chunk's logits are at hand, and the backward pass only
  scales it by the incoming gradient. The logits are built once per step instead of twice
  (forward and recompute), which is exact for any loss built on the log-probabilities
  (SFT sums, DPO's per-sequence sums).
* Trainable head (full fine-tuning): activation checkpointing per chunk; the backward
  pass recomputes the chunk's logits to get the weight gradient.
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


ROW_BUCKET = 32  # the last chunk is padded to a multiple of this many rows


class _FrozenHeadLogprobs(torch.autograd.Function):
    """Token log-probabilities whose hidden-state gradient is computed in the forward pass."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        logprobs, corrects, grads = [], [], []
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start:start + chunk], targets[start:start + chunk]
            n = h.shape[0]
            pad = -n % ROW_BUCKET
            if pad:  # a bounded set of GEMM shapes (CPU GEMM libraries keep state per shape); rows dropped below
                h, t = F.pad(h, (0, 0, 0, pad)), F.pad(t, (0, pad))
            raw = F.linear(h, weight, bias)  # bf16 under autocast
            logits = raw.float()  # a float32 copy, or raw itself when raw is float32
            rows = torch.arange(t.shape[0], device=t.device)
            lse = torch.logsumexp(logits, dim=-1)
            logprobs.append(logits[rows, t] - lse)
            corrects.append(logits.argmax(dim=-1) == t)
            probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
            probs[rows, t] -= 1.0  # softmax - onehot = -(d logp / d logits)
            if probs is not raw:
                probs = raw.copy_(probs)  # back into the projection's buffer, in its dtype: no third block
            grads.append(torch.mm(probs, weight.to(probs.dtype)).neg_().to(hidden.dtype)[:n])
            logprobs[-1], corrects[-1] = logprobs[-1][:n], corrects[-1][:n]
            del raw, logits, probs
        grad = torch.cat(grads)
        ctx.save_for_backward(grad)
        correct = torch.cat(corrects)
        ctx.mark_non_differentiable(correct)
        return torch.cat(logprobs), correct

    @staticmethod
    def backward(ctx: Any, grad_logprobs: torch.Tensor, _grad_correct: Any) -> tuple[Any, ...]:
        (grad,) = ctx.saved_tensors
        return grad * grad_logprobs[:, None].to(grad.dtype), None, None, None, None


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
    head_trains = weight.requires_grad or (bias is not None and bias.requires_grad)
    if torch.is_grad_enabled() and hidden.requires_grad and not head_trains:
        return _FrozenHeadLogprobs.apply(hidden, weight, bias, targets, chunk)
    logprobs, corrects = [], []
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or head_trains)
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
