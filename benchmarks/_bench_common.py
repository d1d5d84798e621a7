"""Shared pieces of ``train_bench.py``: the benchmark data, the TRL chat template, evaluation.

Nothing here is timed. Both sides of the comparison import this module, so the data, the
supervised tokens and the validation loss are defined once.
"""

from __future__ import annotations

import json
import random
import resource
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------- chat template for TRL

# SmolLM2-Instruct's ChatML template, exactly as the embedded model ships it.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# The same template with
# {% generation %} markers around what our ChatRenderer supervises: the assistant content
# through "<|im_end|>" (not the role header before it, not the newline after it). TRL's
# assistant_only_loss=True needs these markers; SmolLM2's own template has none.
SMOLLM2_TEMPLATE_WITH_GENERATION = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def check_template_equivalent(tokenizer: Any, examples: list[dict[str, Any]]) -> int:
    """How many examples render differently under the marked template (must be 0)."""
    bad = 0
    for ex in examples:
        a = tokenizer.apply_chat_template(ex["messages"], tokenize=False)
        b = tokenizer.apply_chat_template(ex["messages"], tokenize=False,
                                          chat_template=SMOLLM2_TEMPLATE_WITH_GENERATION)
        bad += a != b
    return bad


# --------------------------------------------------------------------------- synthetic chat data

_SYSTEMS = [
    "You are a helpful assistant.",
    "You are a concise technical assistant. Answer precisely and avoid speculation.",
    "You are a friendly tutor who explains ideas step by step for a curious student.",
    "You are a customer-support agent for an online bookshop. Be polite and practical.",
    "You are an assistant that helps software engineers debug and design systems.",
    "You are a careful research assistant. Cite the reasoning behind every claim you make.",
]
_COUNTRIES = [("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Norway", "Oslo"),
              ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Chile", "Santiago"), ("Vietnam", "Hanoi"),
              ("Portugal", "Lisbon"), ("Morocco", "Rabat"), ("Finland", "Helsinki"), ("Ghana", "Accra"),
              ("Australia", "Canberra"), ("Turkey", "Ankara"), ("Argentina", "Buenos Aires")]
_TOPICS = [
    ("photosynthesis", "plants", "light energy", "glucose", "chlorophyll"),
    ("compound interest", "savings", "the interest rate", "the balance", "time"),
    ("a hash table", "programs", "a hash function", "constant-time lookups", "collisions"),
    ("the water cycle", "the atmosphere", "evaporation", "precipitation", "clouds"),
    ("vaccination", "the immune system", "antigens", "antibodies", "memory cells"),
    ("gradient descent", "machine learning", "the learning rate", "the loss", "the gradient"),
    ("plate tectonics", "the Earth's crust", "mantle convection", "earthquakes", "mountain ranges"),
    ("inflation", "an economy", "the money supply", "prices", "central banks"),
    ("TCP congestion control", "networks", "the congestion window", "packet loss", "throughput"),
    ("the French Revolution", "European history", "the monarchy", "the Estates-General", "the republic"),
    ("a binary search", "sorted arrays", "the midpoint", "logarithmic time", "the search interval"),
    ("sourdough fermentation", "baking", "wild yeast", "lactic acid bacteria", "the rise of the dough"),
    ("database indexing", "queries", "a B-tree", "read latency", "write amplification"),
    ("the carbon cycle", "the climate", "carbon dioxide", "the oceans", "fossil fuels"),
]
_CONNECT = ["In practice,", "For example,", "Importantly,", "As a result,", "In other words,", "Historically,",
            "A common mistake is to assume that", "It helps to remember that", "On the other hand,", "Finally,"]
_VERBS = ["depends on", "is driven by", "changes", "limits", "shapes", "interacts with", "is measured against",
          "reinforces", "slows down", "speeds up"]
_ADJ = ["gradual", "surprising", "measurable", "important", "subtle", "predictable", "costly", "useful", "fragile"]
_FOLLOWUPS = ["Can you give me a concrete example?", "Why does that matter in practice?",
              "How would I explain this to a ten-year-old?", "What are the most common misconceptions?",
              "How does this compare with the alternatives?", "Can you summarise that in a few bullet points?",
              "What should I read next to go deeper?", "Is there a simple way to test this myself?"]


def _sentence(rng: random.Random, topic: tuple[str, ...]) -> str:
    name, field_, a, b, c = topic
    x, y = rng.sample([a, b, c, field_], 2)
    pattern = rng.randrange(6)
    if pattern == 0:
        return f"{rng.choice(_CONNECT)} {x} {rng.choice(_VERBS)} {y}, which has a {rng.choice(_ADJ)} effect on {name}."
    if pattern == 1:
        return f"When {x} {rng.choice(_VERBS)} {y}, the outcome for {field_} is usually {rng.choice(_ADJ)}."
    if pattern == 2:
        n = rng.randint(2, 97)
        return f"In one study of {n} cases, {x} {rng.choice(_VERBS)} {y} in about {rng.randint(10, 90)}% of them."
    if pattern == 3:
        return f"{rng.choice(_CONNECT)} the key idea behind {name} is that {x} {rng.choice(_VERBS)} {y}."
    if pattern == 4:
        return f"- {x.capitalize()}: {rng.choice(_ADJ)}, and it {rng.choice(_VERBS)} {y}."
    return f"You can think of {x} as something that {rng.choice(_VERBS)} {y}; that is why {name} matters for {field_}."


def _paragraph(rng: random.Random, topic: tuple[str, ...], n: int) -> str:
    return " ".join(_sentence(rng, topic) for _ in range(n))


def _short(rng: random.Random) -> dict[str, Any]:
    kind = rng.randrange(3)
    if kind == 0:
        country, capital = rng.choice(_COUNTRIES)
        q, a = f"What is the capital of {country}?", f"The capital of {country} is {capital}."
    elif kind == 1:
        x, y = rng.randint(2, 999), rng.randint(2, 999)
        q, a = f"What is {x} plus {y}?", f"{x} + {y} = {x + y}."
    else:
        topic = rng.choice(_TOPICS)
        q, a = f"In one sentence, what is {topic[0]}?", _sentence(rng, topic)
    msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    if rng.random() < 0.7:
        msgs.insert(0, {"role": "system", "content": rng.choice(_SYSTEMS)})
    return {"messages": msgs}


def _medium(rng: random.Random, sentences: int) -> dict[str, Any]:
    topic = rng.choice(_TOPICS)
    q = rng.choice([f"Explain {topic[0]} in simple terms.", f"How does {topic[0]} work, and why does it matter?",
                    f"I keep getting confused by {topic[0]}. Can you walk me through it?"])
    return {"messages": [{"role": "system", "content": rng.choice(_SYSTEMS)}, {"role": "user", "content": q},
                         {"role": "assistant", "content": _paragraph(rng, topic, sentences)}]}


def _long(rng: random.Random, turns: int, sentences: int) -> dict[str, Any]:
    topic = rng.choice(_TOPICS)
    msgs = [{"role": "system", "content": rng.choice(_SYSTEMS)},
            {"role": "user", "content": f"I'd like to understand {topic[0]} properly. Where should we start?"}]
    for t in range(turns):
        msgs.append({"role": "assistant", "content": _paragraph(rng, topic, sentences)})
        if t < turns - 1:
            msgs.append({"role": "user", "content": rng.choice(_FOLLOWUPS)})
    return {"messages": msgs}


def synthetic_chat(tokenizer: Any, n: int = 400, seed: int = 1234, lo: int = 30, hi: int = 600) -> list[dict[str, Any]]:
    """A deterministic chat dataset with varied lengths (``lo``..``hi`` tokens as rendered).

    About 45% short Q&A (30-80 tokens), 35% medium explanations (120-350), 20% long
    multi-turn conversations (350-600). System prompts on most examples.
    """
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []

    def length(ex: dict[str, Any]) -> int:
        return len(tokenizer.apply_chat_template(ex["messages"], tokenize=True, return_dict=True)["input_ids"])

    while len(out) < n:
        r = rng.random()
        if r < 0.45:
            ex = _short(rng)
        elif r < 0.80:
            target = rng.randint(120, 350)
            s = 2
            ex = _medium(rng, s)
            while length(ex) < target and s < 40:
                s += 1
                ex = _medium(rng, s)
        else:
            target = rng.randint(350, hi)
            turns = rng.randint(2, 4)
            s = 1
            ex = _long(rng, turns, s)
            while length(ex) < target and s < 40:
                s += 1
                ex = _long(rng, turns, s)
        n_tok = length(ex)
        if lo <= n_tok <= hi:
            out.append(ex)
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8-sig") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


# --------------------------------------------------------------------------- tokenization (ours)

def tokenize_ours(tokenizer: Any, examples: list[dict[str, Any]], max_length: int) -> tuple[list[Any], list[int]]:
    """Our ChatRenderer on each example, dropping those without targets (as train.py does).

    Returns the kept Tokens and their indices into ``examples``.
    """
    from finetune_sdk.providers.local.training.batching import ChatRenderer, tokenize_example

    renderer = ChatRenderer(tokenizer, max_length)
    kept, index = [], []
    for i, ex in enumerate(examples):
        item = tokenize_example(renderer, ex, "chat")
        if sum(1 for x in item.labels[1:] if x != -100) == 0:
            continue
        kept.append(item)
        index.append(i)
    if renderer.mismatches:
        raise RuntimeError(f"our renderer skipped {renderer.mismatches} assistant turn(s)")
    return kept, index


def step_order(n_train: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """The examples of each optimizer step, exactly as our Trainer picks them (``Trainer._batch``)."""
    import math
    from types import SimpleNamespace

    from finetune_sdk.providers.local.training.trainer import Trainer

    fake = SimpleNamespace(train=[None] * n_train, cfg=SimpleNamespace(seed=seed, batch_size=batch_size),
                           steps_per_epoch=max(1, math.ceil(n_train / batch_size)))
    return [Trainer._batch(fake, s) for s in range(steps)]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- evaluation (both sides)

def validation_loss(model: Any, seqs: list[Any], *, float32: bool = False) -> dict[str, float]:
    """Token-mean NLL over the supervised tokens of ``seqs`` (our Tokens), computed the same way
    for both final models: one sequence at a time (no packing, plain causal mask), the
    backbone's hidden states at supervised positions, and our chunked loss
    (``finetune_sdk.providers.local.training.loss.sft_loss_sums``). LoRA dropout off (eval mode).

    ``float32=True`` first converts the whole model to float32 **in place** (call it last):
    with bf16 base weights, an adapter's early updates are smaller than bf16's resolution
    of the layer outputs they are added to and partly round away, so the bf16 evaluation
    understates what a short run learned; the float32 one measures the adapter itself.
    """
    import torch

    if float32:
        model.float()

    from finetune_sdk.providers.local.training.loss import sft_loss_sums

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(base, base.base_model_prefix)
    head = base.get_output_embeddings()
    was_training = model.training
    model.eval()
    device = head.weight.device
    nll_sum, correct, n = 0.0, 0.0, 0
    with torch.no_grad():
        for s in seqs:
            ids = torch.tensor([s.input_ids], device=device)
            hidden = backbone(input_ids=ids, use_cache=False).last_hidden_state[0]
            pos = [t for t in range(len(s) - 1) if s.labels[t + 1] != -100]
            targets = torch.tensor([s.labels[t + 1] for t in pos], dtype=torch.long, device=device)
            selected = hidden.index_select(0, torch.tensor(pos, dtype=torch.long, device=device))
            nll, ok = sft_loss_sums(selected, head.weight, targets, bias=head.bias)
            nll_sum += float(nll)
            correct += float(ok)
            n += len(pos)
    if was_training:
        model.train()
    return {"val_loss": nll_sum / max(n, 1), "val_accuracy": correct / max(n, 1), "val_targets": n}


# --------------------------------------------------------------------------- process facts

def peak_rss_mib() -> float:
    """This process's peak resident set size (ru_maxrss, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def loadavg() -> str:
    try:
        import os

        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
