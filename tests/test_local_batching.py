"""Correctness of the trainer's building blocks on a tiny random Llama (CPU, seconds).

- labels sit exactly on trained assistant spans (weight 0 excluded, end-of-turn included),
  also for tool calls, for templates without {% generation %} markers;
- packed and unpacked forward passes give the same per-sequence logits (sdpa and eager);
- the chunked loss equals plain cross-entropy, values and gradients;
- the DPO loss matches a reference computed from full logits.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import torch.nn.functional as F

from finetune_sdk.providers.local.training.batching import (IGNORE, ChatRenderer, Tokens, UnsupportedContent,
                                                            build_micro_batch, pack, tokenize_example)
from finetune_sdk.providers.local.training.loss import dpo_loss, sequence_logprobs, sft_loss_sums, token_logprobs
from finetune_sdk.providers.local.training.tiny import make_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tok(tiny: Path):  # type: ignore[no-untyped-def]
    return transformers.AutoTokenizer.from_pretrained(str(tiny))


@pytest.fixture(scope="module")
def model(tiny: Path):  # type: ignore[no-untyped-def]
    return transformers.AutoModelForCausalLM.from_pretrained(str(tiny)).eval()


def trained_text(tok, seq: Tokens) -> str:  # type: ignore[no-untyped-def]
    return tok.decode([t for t, label in zip(seq.input_ids, seq.labels) if label != IGNORE])


def test_labels_cover_exactly_the_trained_assistant_turns(tok) -> None:  # type: ignore[no-untyped-def]
    r = ChatRenderer(tok, 512)
    seq = r.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
                  {"role": "assistant", "content": "Hi there", "weight": 0}, {"role": "user", "content": "Paris?"},
                  {"role": "assistant", "content": "Sunny Paris"}])
    assert trained_text(tok, seq) == "Sunny Paris<|im_end|>"
    assert seq.input_ids[-1] != tok.convert_tokens_to_ids("<|im_end|>")  # the newline after it is not trained
    both = r.chat([{"role": "user", "content": "a"}, {"role": "assistant", "content": "one"},
                   {"role": "user", "content": "b"}, {"role": "assistant", "content": "two"}])
    assert trained_text(tok, both) == "one<|im_end|>two<|im_end|>"


def test_tool_calls_are_trained_tool_results_are_not(tok) -> None:  # type: ignore[no-untyped-def]
    r = ChatRenderer(tok, 512)
    seq = r.chat([{"role": "user", "content": "weather?"},
                  {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                        "function": {"name": "get",
                                                                     "arguments": '{"city": "Paris"}'}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                  {"role": "assistant", "content": "It is sunny."}])
    text = trained_text(tok, seq)
    assert text == '<tool_call>get {"city": "Paris"}</tool_call><|im_end|>It is sunny.<|im_end|>'
    assert "sunny<|im_end|>" not in text.replace("It is sunny.", "")


def test_truncation_is_flagged(tok) -> None:  # type: ignore[no-untyped-def]
    seq = ChatRenderer(tok, 12).chat([{"role": "user", "content": "hello " * 20},
                                      {"role": "assistant", "content": "x"}])
    assert seq.truncated and len(seq) == 12


def test_images_are_refused_never_dropped(tok) -> None:  # type: ignore[no-untyped-def]
    """A text-only model cannot learn from an image: an image part raises, saying where it is."""
    r = ChatRenderer(tok, 512)
    img = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    ask = {"type": "text", "text": "What is this?"}
    messages = [{"role": "user", "content": [ask, img]}, {"role": "assistant", "content": "A cat."}]
    with pytest.raises(UnsupportedContent, match=r"messages\[0\]\.content\[1\] is an image.*text-only"):
        tokenize_example(r, {"messages": messages}, "chat")
    pair = {"input": {"messages": [{"role": "user", "content": [img]}]},
            "preferred_output": [{"role": "assistant", "content": "A cat."}],
            "non_preferred_output": [{"role": "assistant", "content": "A dog."}]}
    with pytest.raises(UnsupportedContent, match=r"input\.messages\[0\]\.content\[0\] is an image"):
        tokenize_example(r, pair, "preference")
    with pytest.raises(UnsupportedContent, match="message 0, content part 1 is an image"):  # the renderer itself
        r.chat(messages)
    with pytest.raises(UnsupportedContent, match="'input_audio' part"):  # nothing of another kind is dropped either
        r.chat([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}])
    text_parts = r.chat([{"role": "user", "content": [ask]}, {"role": "assistant", "content": [
        {"type": "text", "text": "A "}, {"type": "text", "text": "cat."}]}])
    assert trained_text(tok, text_parts) == "A cat.<|im_end|>"


def test_generation_markers_not_needed_with_a_default_system_prompt(tok) -> None:  # type: ignore[no-untyped-def]
    """Templates that inject text (a default system prompt) still get exact spans."""
    tok2 = type(tok).from_pretrained(tok.name_or_path)
    tok2.chat_template = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\nDefault.<|im_end|>\n{% endif %}"
                          + tok.chat_template)
    seq = ChatRenderer(tok2, 512).chat([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])
    assert trained_text(tok2, seq) == "Yo<|im_end|>"
    assert tok2.decode(seq.input_ids).startswith("<|im_start|>system\nDefault.")


@pytest.mark.parametrize("impl, mask", [("sdpa", "bool"), ("eager", "additive"), ("finetune_segments", "segments")])
def test_packed_equals_unpacked(tiny: Path, tok, impl: str, mask: str) -> None:  # type: ignore[no-untyped-def]
    from finetune_sdk.providers.local.training.attention import register

    register()
    m = transformers.AutoModelForCausalLM.from_pretrained(str(tiny), attn_implementation=impl).eval()
    r = ChatRenderer(tok, 512)
    seqs = [r.chat([{"role": "user", "content": f"question number {i} " * (i + 1)},
                    {"role": "assistant", "content": f"answer {i}"}]) for i in range(3)]
    mb = build_micro_batch(seqs, mask=mask)
    extra = {}
    if mask == "segments":
        extra = {"cu_seq_lens_q": mb.cu_seqlens, "cu_seq_lens_k": mb.cu_seqlens}
    with torch.no_grad():
        packed = m(input_ids=mb.input_ids, attention_mask=mb.attention_mask, position_ids=mb.position_ids,
                   **extra).logits[0]
        offset = 0
        for s in seqs:
            alone = m(input_ids=torch.tensor([s.input_ids])).logits[0]
            assert torch.allclose(packed[offset:offset + len(s)], alone, atol=1e-5)
            offset += len(s)


def test_targets_never_cross_sequence_boundaries(tok) -> None:  # type: ignore[no-untyped-def]
    a = Tokens([1, 2, 3], [IGNORE, 2, 3])
    b = Tokens([4, 5, 6], [4, 5, 6])  # its first token must NOT be a target of a's last position
    mb = build_micro_batch([a, b], mask="none")
    assert mb.target_positions.tolist() == [0, 1, 3, 4]
    assert mb.targets.tolist() == [2, 3, 5, 6]
    assert mb.segments.tolist() == [0, 0, 1, 1]
    assert mb.position_ids.tolist() == [[0, 1, 2, 0, 1, 2]]


def test_pack_respects_capacity_and_keeps_everything() -> None:
    lengths = [5, 3, 8, 2, 7, 1, 9, 4]
    bins = pack(lengths, 10)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
    assert len(bins) == math.ceil(sum(lengths) / 10)  # best-fit decreasing is optimal here


def test_chunked_loss_equals_cross_entropy() -> None:
    torch.manual_seed(0)
    h = torch.randn(300, 32, requires_grad=True)
    w = torch.randn(777, 32, requires_grad=True)
    t = torch.randint(0, 777, (300,))
    nll, correct = sft_loss_sums(h, w, t, chunk=64)
    nll.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ref = F.cross_entropy(h @ w.T, t, reduction="sum")
    ref.backward()
    assert torch.allclose(nll, ref, rtol=1e-5)
    assert torch.allclose(gh, h.grad, atol=1e-5) and torch.allclose(gw, w.grad, atol=1e-5)
    assert int(correct) == int(((h @ w.T).argmax(-1) == t).sum())
    empty_lp, empty_ok = token_logprobs(h[:0], w, t[:0])
    assert empty_lp.numel() == 0 and empty_ok.numel() == 0


@pytest.mark.parametrize("head_trains", [True, False])  # full fine-tuning (checkpointed) / LoRA (frozen head)
def test_chunked_loss_never_materialises_full_logits(monkeypatch: pytest.MonkeyPatch, head_trains: bool) -> None:
    """The biggest logits block ever built is [chunk x vocab]."""
    import finetune_sdk.providers.local.training.loss as loss_mod

    shapes: list[tuple[int, ...]] = []
    real = loss_mod.F.linear

    def spy(x, weight, bias=None):  # type: ignore[no-untyped-def]
        out = real(x, weight, bias)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(loss_mod.F, "linear", spy)
    h = torch.randn(1000, 16, requires_grad=True)
    w = torch.randn(500, 16, requires_grad=head_trains)
    nll, _ = sft_loss_sums(h, w, torch.randint(0, 500, (1000,)), chunk=128)
    nll.backward()
    assert shapes and max(s[0] for s in shapes) <= 128


def test_dpo_loss_matches_reference(model, tok) -> None:  # type: ignore[no-untyped-def]
    r = ChatRenderer(tok, 512)
    prompt = [{"role": "user", "content": "Capital of France?"}]
    chosen = r.chat(prompt + [{"role": "assistant", "content": "Paris."}])
    rejected = r.chat(prompt + [{"role": "assistant", "content": "Lyon, I think."}])

    def reference_logp(seq: Tokens) -> torch.Tensor:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([seq.input_ids])).logits[0]
        logp = torch.log_softmax(logits.float(), -1)
        total = torch.tensor(0.0)
        for t in range(len(seq) - 1):
            if seq.labels[t + 1] != IGNORE:
                total += logp[t, seq.input_ids[t + 1]]
        return total

    mb = build_micro_batch([chosen, rejected], mask="bool")
    with torch.no_grad():
        hidden = model.model(input_ids=mb.input_ids, attention_mask=mb.attention_mask,
                             position_ids=mb.position_ids).last_hidden_state[0]
        ours = sequence_logprobs(hidden.index_select(0, mb.target_positions), model.lm_head.weight, mb.targets,
                                 mb.segments, 2, chunk=3)
    ref = torch.stack([reference_logp(chosen), reference_logp(rejected)])
    assert torch.allclose(ours, ref, atol=1e-4)
    # With the reference model slightly different from the policy, the loss is the textbook formula.
    beta = 0.1
    ref_c, ref_r = ref[0] - 0.5, ref[1] + 0.25
    loss, stats = dpo_loss(ours[:1], ours[1:], ref_c[None], ref_r[None], beta)
    expected = -F.logsigmoid(beta * ((ours[0] - ref_c) - (ours[1] - ref_r)))
    assert torch.allclose(loss, expected, atol=1e-6)
    assert stats["reward_accuracy_sum"] in (0.0, 1.0)


# ---------------------------------------------------------------------- precision policy

def test_precision_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    from finetune_sdk.providers.local.jobs.hparams import TrainConfig
    from finetune_sdk.providers.local.training import trainer as trainer_mod
    from finetune_sdk.providers.local.training.train import JobRunner

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for fast in (True, False):
        monkeypatch.setattr(trainer_mod, "cpu_has_fast_bf16", lambda fast=fast: fast)
        auto = trainer_mod.autocast_dtype(TrainConfig(), cpu)
        assert auto is (torch.bfloat16 if fast else None)
        # Frozen LoRA base weights follow the autocast dtype; weights the optimizer updates stay float32.
        assert JobRunner._dtype(TrainConfig(), cpu) is (torch.bfloat16 if fast else torch.float32)
        assert JobRunner._dtype(TrainConfig(lora=False), cpu) is torch.float32
        assert trainer_mod.autocast_dtype(TrainConfig(dtype="float32"), cpu) is None
        assert trainer_mod.autocast_dtype(TrainConfig(dtype="bfloat16"), cpu) is torch.bfloat16
        assert trainer_mod.autocast_dtype(TrainConfig(dtype="float16"), cpu) is None  # no fp16 autocast on CPU
        assert trainer_mod.autocast_dtype(TrainConfig(), cuda) is torch.bfloat16
        assert trainer_mod.autocast_dtype(TrainConfig(dtype="float16"), cuda) is torch.float16


def test_cpu_probe_failure_means_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    from finetune_sdk.providers.local.training.trainer import cpu_has_fast_bf16

    def broken() -> bool:
        raise RuntimeError("no cpuinfo")

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", broken, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", broken, raising=False)
    assert cpu_has_fast_bf16() is False


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lora_step_in_each_precision(tiny: Path, tok, dtype: str) -> None:  # type: ignore[no-untyped-def]
    """One LoRA step in float32 and in bf16 autocast (bf16 frozen weights, float32 adapters): the
    step-1 losses agree (the adapters start as a no-op), the adapters move, and stay float32."""
    from finetune_sdk.providers.local import models
    from finetune_sdk.providers.local.jobs.hparams import TrainConfig
    from finetune_sdk.providers.local.training.train import JobRunner
    from finetune_sdk.providers.local.training.trainer import Dist, Trainer

    cfg = TrainConfig(batch_size=2, dtype=dtype, lora_rank=4, lora_alpha=8, max_length=64, seed=3)
    cpu = torch.device("cpu")
    resolved = models.resolve_base_model(str(tiny))
    torch.manual_seed(0)
    model = JobRunner._load_model(None, models, resolved, cfg, cpu, JobRunner._dtype(cfg, cpu), "sdpa")  # type: ignore[arg-type]
    r = ChatRenderer(tok, 64)
    seqs = [r.chat([{"role": "user", "content": f"Count to {i}"}, {"role": "assistant", "content": " ".join(
        str(j) for j in range(i))}]) for i in (3, 5)]
    t = Trainer(cfg, model, seqs, [], device=cpu, dist=Dist(), mask="bool", emit=lambda *a: None,
                checkpoint_dir=Path("/nonexistent"), should_stop=lambda: None, save_adapter=lambda p: None)
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    out = t.run_step()
    assert math.isfinite(out["train_loss"])
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, adapters[n])]
    assert moved, "no adapter weight changed"
    assert all(p.dtype is torch.float32 for p in model.parameters() if p.requires_grad)
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert frozen == {torch.bfloat16 if dtype == "bfloat16" else torch.float32}
    test_lora_step_in_each_precision.losses[dtype] = out["train_loss"]  # type: ignore[attr-defined]
    if len(test_lora_step_in_each_precision.losses) == 2:  # type: ignore[attr-defined]
        a, b = test_lora_step_in_each_precision.losses.values()  # type: ignore[attr-defined]
        assert abs(a - b) < 0.05 * max(abs(a), 1.0)


test_lora_step_in_each_precision.losses = {}  # type: ignore[attr-defined]
