"""Attention for padding-free packed rows on CPU (and on GPUs without FlashAttention).

A packed row holds several sequences back to back. A block-diagonal mask isolates them
correctly but makes SDPA compute the whole ``T × T`` score matrix and fall back to its
generic kernel; this attention instead runs causal SDPA on each sequence's own slice, so
the work is the sum of the sequences' squares and the efficient causal kernels apply.
Sequence boundaries arrive as ``cu_seq_lens_q`` — the same keyword FlashAttention's
variable-length path takes — which transformers passes through to attention functions.
Measured on SmolLM2-135M LoRA on 2 CPU cores: ~1.4x faster steps than a block-diagonal
mask at equal losses (see docs/local-training.md).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["SEGMENT_ATTENTION", "register"]

SEGMENT_ATTENTION = "finetune_segments"


def segment_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Causal attention within each packed sequence. ``query``: [1, heads, T, dim]."""
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None:  # not a packed row (generation, a single sequence): plain SDPA with the model's mask
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        return ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask, dropout=dropout,
                                               scaling=scaling, **kwargs)
    edges = bounds.tolist() if isinstance(bounds, torch.Tensor) else list(bounds)
    gqa = query.shape[1] != key.shape[1]
    p = dropout if module.training else 0.0
    parts = [F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True,
                                            dropout_p=p, scale=scaling, enable_gqa=gqa)
             for a, b in zip(edges[:-1], edges[1:]) if b > a]
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make the attention selectable with ``attn_implementation=SEGMENT_ATTENTION``."""
    from transformers import AttentionInterface

    AttentionInterface.register(SEGMENT_ATTENTION, segment_attention)
    return SEGMENT_ATTENTION
