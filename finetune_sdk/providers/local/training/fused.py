"""Faster layers for the training step: LoRA folded into one GEMM, RMSNorm with a lean backward.

PEFT computes a LoRA linear layer as ``base(x) + lora_B(lora_A(x)) * scaling``: besides the
two matmuls, that is an element-wise multiply and an add over the full ``[tokens × out]``
output, forward and backward. Here the same value is ``addmm(base(x), lora_A(x), Bᵀ,
alpha=scaling)``: the scale and the sum happen inside the GEMM, and in the backward pass
the scale lands on the small ``[tokens × rank]`` / ``[rank × out]`` gradients. Measured on
SmolLM2-135M LoRA (bf16, 2 CPU cores) the multiply and add were ~12 % of a training step.

Only the plain case is rewritten — one active adapter, not merged, no LoRA variant (DoRA …),
no adapter bias, an ``nn.Linear`` base, no per-call adapter selection, and matching dtypes
(or autocast); anything else goes through PEFT's own forward, unchanged.

RMSNorm as transformers writes it (up-cast, mean of squares, rsqrt, down-cast, scale) is
six autograd nodes that keep float32 copies of the whole activation for the backward
pass. ``_RMSNorm`` keeps only the input and the per-token ``rsqrt`` and computes the
gradient in one expression: 2x faster forward+backward on CPU for SmolLM2's 576-wide
norms, and less memory. It replaces a norm module only after checking, on a probe
input, that it computes the same function (so variants such as Gemma's ``1 + weight``
keep their own forward).
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["fuse_lora", "fuse_rms_norm"]


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    plain = (not args and not kwargs and not self.disable_adapters and not self.merged
             and len(self.active_adapters) == 1)
    if plain:
        name = self.active_adapters[0]
        lora_a = self.lora_A[name] if name in self.lora_A else None
        lora_b = self.lora_B[name] if name in self.lora_B else None
        base = self.base_layer
        plain = (lora_a is not None and lora_b is not None and name not in self.lora_variant
                 and type(base) is nn.Linear and lora_b.bias is None)
    if plain:
        autocast = torch.is_autocast_enabled(x.device.type)
        plain = autocast or x.dtype == lora_a.weight.dtype == base.weight.dtype  # type: ignore[union-attr]
    if not plain:
        return self._peft_forward(x, *args, **kwargs)
    assert lora_a is not None and lora_b is not None  # plain implies both
    result = F.linear(x, base.weight, base.bias)
    low = lora_a(self.lora_dropout[name](x))
    out = result.shape[-1]
    fused = torch.addmm(result.reshape(-1, out), low.reshape(-1, low.shape[-1]), lora_b.weight.t(),
                        alpha=self.scaling[name])
    return fused.view(result.shape)


def fuse_lora(model: nn.Module) -> int:
    """Give every PEFT LoRA ``Linear`` of ``model`` the fused forward; returns how many layers changed.

    The layers' parameters, state dict and saved adapters are untouched; only the
    arithmetic of the forward pass is regrouped (equal up to floating-point rounding).
    """
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:  # pragma: no cover - peft is a dependency of the local backend
        return 0
    count = 0
    for module in model.modules():
        if type(module) is LoraLinear and not hasattr(module, "_peft_forward"):
            layer: Any = module  # forward is replaced on purpose
            layer._peft_forward = layer.forward
            layer.forward = types.MethodType(_fused_forward, layer)
            count += 1
    return count


class _RMSNorm(torch.autograd.Function):
    """``weight * (x * rsqrt(mean(x²) + eps))`` computed in float32 and rounded to ``x``'s dtype."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        xf = x.float()  # x itself when x is float32: nothing below may write into it
        rstd = torch.rsqrt(xf.square().mean(-1, keepdim=True).add_(eps))
        ctx.save_for_backward(x, weight, rstd)
        return weight * (xf * rstd).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        x, weight, rstd = ctx.saved_tensors
        normed = x.float() * rstd
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (grad_out.float() * normed).reshape(-1, normed.shape[-1]).sum(0).to(weight.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            g = (grad_out * weight).float()
            dot = (g * normed).mean(-1, keepdim=True)
            grad_x = g.sub_(normed.mul_(dot)).mul_(rstd).to(x.dtype)
        return grad_x, grad_weight, None


def _rms_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    return _RMSNorm.apply(hidden_states, self.weight, self._fused_eps)


def fuse_rms_norm(model: nn.Module) -> int:
    """Give RMSNorm modules that compute the standard function the lean forward/backward.

    A module qualifies when its class name ends in ``RMSNorm``, it has a 1-D ``weight`` and
    an epsilon, and its own forward agrees with ours on a probe input (float32 and its
    parameter dtype). Returns how many modules changed.
    """
    count = 0
    checked: dict[type, bool] = {}
    module: Any
    for module in model.modules():
        name = type(module).__name__
        weight = getattr(module, "weight", None)
        eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
        if (not name.endswith("RMSNorm") or not isinstance(weight, torch.Tensor) or weight.dim() != 1
                or not isinstance(eps, float) or hasattr(module, "_fused_eps")):
            continue
        if type(module) not in checked:
            checked[type(module)] = _agrees(module, float(eps))
        if checked[type(module)]:
            module._fused_eps = float(eps)
            module.forward = types.MethodType(_rms_forward, module)
            count += 1
    return count


def _agrees(module: nn.Module, eps: float) -> bool:
    weight: Any = module.weight
    try:
        with torch.no_grad():
            probe = torch.randn(2, 3, weight.shape[0], generator=torch.Generator().manual_seed(0))
            probe = probe.to(device=weight.device, dtype=weight.dtype)
            theirs = module(probe)
            ours = _RMSNorm.apply(probe, weight, eps)
        return theirs.dtype == ours.dtype and torch.allclose(theirs.float(), ours.float(), rtol=2e-2, atol=2e-2)
    except Exception:
        return False
