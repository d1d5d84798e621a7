"""A tiny random Llama with an offline BPE tokenizer and a ChatML template.

For tests and examples that must train a real model in seconds, with no download:
``make_tiny_model(path)`` writes a Hugging Face model directory (config, safetensors
weights, tokenizer, chat template) that the local backend accepts like any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["make_tiny_model", "CHATML_TEMPLATE"]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% endif %}"
    "{% if message.get('tool_calls') %}{% for call in message['tool_calls'] %}"
    "{{ '<tool_call>' + call['function']['name'] + ' ' + (call['function']['arguments'] | tojson) + '</tool_call>' }}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.", "Hello, how are you today?", "I am fine, thank you.",
    "Extract the person's name, age and city. Reply with JSON only.",
    '{"name":"Maria","age":34,"city":"Lisbon"}', "Maria is 34 and lives in Lisbon.", "system user assistant tool",
    "0123456789 {}[]:,\"' .-_!?", "What is the capital of France? Paris.", "weather in Paris is sunny",
]


def make_tiny_model(path: str | Path, *, hidden_size: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                    vocab_size: int = 512, seed: int = 0, corpus: Iterable[str] | None = None,
                    tie_word_embeddings: bool = True) -> Path:
    """Write a tiny random ``LlamaForCausalLM`` and its tokenizer to ``path``; return the path."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(list(corpus or _CORPUS) * 20, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  bos_token=None, unk_token=None)
    tok.chat_template = CHATML_TEMPLATE
    tok.save_pretrained(str(out))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=4096, tie_word_embeddings=tie_word_embeddings,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out), safe_serialization=True)
    return out
