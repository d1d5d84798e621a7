"""The trainer's fast paths compute the same values and gradients as the plain ones (CPU, seconds).

- the loss with a frozen output layer (gradient formed in the forward pass) equals plain
  cross-entropy for any upstream weighting (SFT sums, DPO per-sequence sums);
- per-sequence attention with the explicit backward for short sequences equals per-sequence
  SDPA, values and gradients, with grouped-query heads, in float32 and bf16;
- the fused LoRA forward equals PEFT's, values and gradients, and steps aside when the
  adapter is disabled or merged;
- the lean RMSNorm equals transformers' RMSNorm, values and gradients (input and weight),
  and is not applied to a norm that computes something else.
"""

from __future__ import annotations

import types
from itertools import pairwise
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import torch.nn.functional as F

from finetune_sdk.providers.local.training import attention, fused
from finetune_sdk.providers.local.training.loss import sequence_logprobs, sft_loss_sums, token_logprobs
from finetune_sdk.providers.local.training.tiny import make_tiny_model


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


# ---------------------------------------------------------------------- loss with a frozen head

@pytest.mark.parametrize("with_bias", [False, True])
def test_frozen_head_loss_and_gradient_equal_cross_entropy(with_bias: bool) -> None:
    torch.manual_seed(0)
    h = torch.randn(300, 32, requires_grad=True)
    w = torch.randn(777, 32)  # frozen: the LoRA case
    b = torch.randn(777) if with_bias else None
    t = torch.randint(0, 777, (300,))
    nll, correct = sft_loss_sums(h, w, t, bias=b, chunk=64)
    assert nll.grad_fn is not None and type(nll.grad_fn).__name__ != "CheckpointFunctionBackward"
    (nll * 0.5).backward()
    got = h.grad.clone()
    h.grad = None
    logits = F.linear(h, w, b)
    ref = F.cross_entropy(logits, t, reduction="sum")
    (ref * 0.5).backward()
    assert torch.allclose(nll, ref, rtol=1e-5)
    assert torch.allclose(got, h.grad, atol=1e-5)
    assert int(correct) == int((logits.argmax(-1) == t).sum())


def test_frozen_head_gradient_with_per_sequence_weights() -> None:
    """DPO weights each sequence's log-probability differently; the precomputed gradient must follow."""
    torch.manual_seed(1)
    h = torch.randn(200, 16, requires_grad=True)
    w = torch.randn(300, 16)
    t = torch.randint(0, 300, (200,))
    seg = torch.randint(0, 6, (200,))
    weights = torch.linspace(-2, 3, 6)
    (sequence_logprobs(h, w, t, seg, 6, chunk=37) * weights).sum().backward()
    got = h.grad.clone()
    h.grad = None
    lp = torch.log_softmax(h @ w.T, -1).gather(1, t[:, None])[:, 0]
    (torch.zeros(6).index_add(0, seg, lp) * weights).sum().backward()
    assert torch.allclose(got, h.grad, atol=1e-5)


def test_frozen_head_bf16_autocast() -> None:
    """Under bf16 autocast the gradient has the hidden states' dtype and stays close to float32's.

    (That no logits block exceeds the chunk is checked for both paths in test_local_batching.py.)
    """
    torch.manual_seed(2)
    h32 = torch.randn(500, 32)
    w32 = torch.randn(400, 32)
    t = torch.randint(0, 400, (500,))
    h = h32.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        nll, _ = sft_loss_sums(h, w32.bfloat16(), t, chunk=128)
    nll.backward()
    assert h.grad is not None and h.grad.dtype is torch.bfloat16
    ref_h = h32.clone().requires_grad_()
    F.cross_entropy(ref_h @ w32.T, t, reduction="sum").backward()
    assert rel(h.grad, ref_h.grad) < 0.05


def test_token_logprobs_bad_and_empty_inputs() -> None:
    w = torch.randn(10, 4)
    lp, ok = token_logprobs(torch.zeros(0, 4, requires_grad=True), w, torch.zeros(0, dtype=torch.long))
    assert lp.numel() == 0 and ok.numel() == 0
    with pytest.raises(RuntimeError):  # hidden size disagrees with the head
        token_logprobs(torch.randn(3, 5, requires_grad=True), w, torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------- attention

def _segments_reference(q, k, v, edges):  # type: ignore[no-untyped-def]
    parts = [F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=True,
                                            enable_gqa=q.shape[1] != k.shape[1])
             for a, b in pairwise(edges)]
    return torch.cat(parts, 2).transpose(1, 2)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_segment_attention_explicit_backward_matches_sdpa(dtype: torch.dtype, tol: float) -> None:
    """Short sequences (explicit backward) mixed with a long one (SDPA's backward) in one packed row."""
    torch.manual_seed(0)
    heads, kv, dim = 6, 2, 16
    edges = [0, 5, 60, 61, 61 + attention.SHORT_BACKWARD + 40, 61 + attention.SHORT_BACKWARD + 100]
    total = edges[-1]
    q = torch.randn(1, heads, total, dim, dtype=dtype, requires_grad=True)
    k = torch.randn(1, kv, total, dim, dtype=dtype, requires_grad=True)
    v = torch.randn(1, kv, total, dim, dtype=dtype, requires_grad=True)
    grad = torch.randn(1, total, heads, dim, dtype=dtype)
    module = types.SimpleNamespace(training=True)
    out, _ = attention.segment_attention(module, q, k, v, None, cu_seq_lens_q=torch.tensor(edges))
    out.backward(grad)
    got = [out, q.grad, k.grad, v.grad]
    qq, kk, vv = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = _segments_reference(qq, kk, vv, edges)
    ref.backward(grad.double())
    for a, b in zip(got, [ref, qq.grad, kk.grad, vv.grad]):
        assert rel(a, b) < tol


def test_segment_attention_without_gradients_or_boundaries() -> None:
    """No grad: every sequence through SDPA. No boundaries (generation): the model's own mask."""
    from finetune_sdk.providers.local.training.attention import segment_attention

    torch.manual_seed(1)
    q, k, v = torch.randn(1, 4, 30, 8), torch.randn(1, 2, 30, 8), torch.randn(1, 2, 30, 8)
    module = types.SimpleNamespace(training=False, is_causal=True, config=types.SimpleNamespace())
    with torch.no_grad():
        out, _ = segment_attention(module, q, k, v, None, cu_seq_lens_q=torch.tensor([0, 10, 30]))
    assert torch.allclose(out, _segments_reference(q, k, v, [0, 10, 30]), atol=1e-6)


# ---------------------------------------------------------------------- model-level fusion

@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-fused") / "model")


def _lora(tiny: Path, dropout: float = 0.0, attn: str = "sdpa"):  # type: ignore[no-untyped-def]
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = transformers.AutoModelForCausalLM.from_pretrained(str(tiny), attn_implementation=attn)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))
    for name, p in model.named_parameters():  # non-zero B so the adapters contribute
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model


def _loss_and_grads(model, ids):  # type: ignore[no-untyped-def]
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_fused_lora_equals_peft(tiny: Path) -> None:
    ids = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(0))
    plain = _lora(tiny)
    want_loss, want = _loss_and_grads(plain, ids)
    model = _lora(tiny)
    n_linear = sum(1 for m in model.modules() if type(m).__name__ == "Linear" and hasattr(m, "lora_A"))
    assert fused.fuse_lora(model) == n_linear > 0
    assert fused.fuse_lora(model) == 0  # idempotent
    got_loss, got = _loss_and_grads(model, ids)
    assert torch.allclose(got_loss, want_loss, atol=1e-5)
    assert got.keys() == want.keys()
    assert all(torch.allclose(got[n], want[n], atol=1e-5) for n in want)
    # The adapters still switch off (the DPO reference) and merge (export) through PEFT's own paths.
    with torch.no_grad():
        with model.disable_adapter():
            off = model(input_ids=ids).logits
        base = transformers.AutoModelForCausalLM.from_pretrained(str(tiny))
        assert torch.allclose(off, base(input_ids=ids).logits, atol=1e-5)
        before = model(input_ids=ids).logits
        model.merge_adapter()
        assert torch.allclose(model(input_ids=ids).logits, before, atol=1e-4)
        model.unmerge_adapter()
    # bf16 autocast over bf16 base weights and float32 adapters, as the trainer runs on CPU.
    model.get_base_model().to(torch.bfloat16)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    assert abs(float(out.loss) - float(want_loss)) < 0.05


def test_fused_lora_leaves_dropout_to_peft_semantics(tiny: Path) -> None:
    """With dropout the fused path applies the same dropout module: same loss under the same seed."""
    ids = torch.randint(0, 300, (1, 16), generator=torch.Generator().manual_seed(1))
    plain, model = _lora(tiny, dropout=0.3), _lora(tiny, dropout=0.3)
    fused.fuse_lora(model)
    torch.manual_seed(5)
    a = plain(input_ids=ids, labels=ids).loss
    torch.manual_seed(5)
    b = model(input_ids=ids, labels=ids).loss
    assert torch.allclose(a, b, atol=1e-5)


def test_fuse_lora_on_a_model_without_adapters(tiny: Path) -> None:
    base = transformers.AutoModelForCausalLM.from_pretrained(str(tiny))
    assert fused.fuse_lora(base) == 0
    with pytest.raises(AttributeError):
        fused.fuse_lora(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("trainable_weight", [False, True])
def test_fused_rms_norm_equals_transformers(tiny: Path, trainable_weight: bool) -> None:
    ids = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(2))
    plain = transformers.AutoModelForCausalLM.from_pretrained(str(tiny))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tiny))
    for m in (plain, model):
        for name, p in m.named_parameters():
            p.requires_grad_(trainable_weight or "norm" not in name)
            if "norm" in name:
                torch.nn.init.normal_(p, mean=1.0, std=0.2)
    model.load_state_dict(plain.state_dict())
    n_norms = sum(1 for m in model.modules() if type(m).__name__.endswith("RMSNorm"))
    assert fused.fuse_rms_norm(model) == n_norms > 0
    assert fused.fuse_rms_norm(model) == 0
    want_loss, want = _loss_and_grads(plain, ids)
    got_loss, got = _loss_and_grads(model, ids)
    assert torch.allclose(got_loss, want_loss, atol=1e-5)
    assert got.keys() == want.keys()
    assert any("norm" in n for n in got) == trainable_weight
    assert all(torch.allclose(got[n], want[n], atol=1e-5) for n in want)


def test_fused_rms_norm_skips_a_norm_that_computes_something_else() -> None:
    class OffsetRMSNorm(torch.nn.Module):  # Gemma-style: scales by (1 + weight)
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(8))
            self.eps = 1e-6

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * (1 + self.weight)

    net = torch.nn.Sequential(OffsetRMSNorm())
    assert fused.fuse_rms_norm(net) == 0
    x = torch.randn(2, 8)
    assert torch.allclose(net(x), x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


# ---------------------------------------------------------------------- bounded shapes

def test_micro_batch_padding_to_a_multiple(tiny: Path) -> None:
    """A filler segment rounds the row up; it has no targets and is not counted as tokens."""
    from finetune_sdk.providers.local.training.batching import IGNORE, Tokens, build_micro_batch

    seqs = [Tokens(input_ids=list(range(1, 11)), labels=[IGNORE] * 5 + list(range(6, 11))),
            Tokens(input_ids=list(range(1, 8)), labels=[IGNORE] * 3 + list(range(4, 8)))]
    plain = build_micro_batch(seqs, mask="segments")
    padded = build_micro_batch(seqs, mask="segments", pad_to_multiple=8)
    assert plain.input_ids.shape[1] == 17 and plain.padding == 0
    assert padded.input_ids.shape[1] == 24 and padded.padding == 7 and padded.tokens == plain.tokens == 17
    assert padded.cu_seqlens.tolist() == [0, 10, 17, 24]
    assert padded.position_ids[0, 17:].tolist() == list(range(7))
    assert torch.equal(padded.targets, plain.targets) and torch.equal(padded.target_positions, plain.target_positions)
    assert torch.equal(padded.segments, plain.segments)
    exact = build_micro_batch(seqs[:1], mask="segments", pad_to_multiple=5)
    assert exact.padding == 0 and exact.input_ids.shape[1] == 10
    masked = build_micro_batch(seqs, mask="bool", pad_to_multiple=8)  # a full mask row is not padded
    assert masked.padding == 0 and masked.input_ids.shape[1] == 17
    with pytest.raises(ValueError, match="pad_to_multiple"):
        build_micro_batch(seqs, mask="segments", pad_to_multiple=0)


def test_padded_row_gives_the_same_loss_and_gradients(tiny: Path) -> None:
    """The filler changes nothing for the real sequences: same scored hidden states, loss and adapter gradients."""
    from finetune_sdk.providers.local.training.attention import register
    from finetune_sdk.providers.local.training.batching import ChatRenderer, build_micro_batch

    register()
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny))
    model = _lora(tiny, attn="finetune_segments")
    r = ChatRenderer(tok, 512)
    seqs = [r.chat([{"role": "user", "content": "word " * (7 * i + 3)}, {"role": "assistant", "content": f"ok {i}"}])
            for i in range(3)]
    backbone = model.get_base_model().model
    head = model.get_base_model().lm_head

    def run(multiple: int):  # type: ignore[no-untyped-def]
        mb = build_micro_batch(seqs, mask="segments", pad_to_multiple=multiple)
        cu = mb.cu_seqlens.to(torch.int32)
        model.zero_grad(set_to_none=True)
        hidden = backbone(input_ids=mb.input_ids, position_ids=mb.position_ids, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                          max_length_q=max(mb.lengths), max_length_k=max(mb.lengths)).last_hidden_state[0]
        nll, _ = sft_loss_sums(hidden.index_select(0, mb.target_positions), head.weight, mb.targets, chunk=16)
        nll.backward()
        return mb, nll.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    _, loss1, g1 = run(1)
    mb64, loss64, g64 = run(64)
    assert mb64.padding > 0 and mb64.input_ids.shape[1] % 64 == 0
    assert torch.allclose(loss1, loss64, atol=1e-5)
    assert g1.keys() == g64.keys() and all(torch.allclose(g1[n], g64[n], atol=1e-5) for n in g1)
