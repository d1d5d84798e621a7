"""Each service's rules for training data, as the validator applies them.

The format checks of :mod:`.records` are the same everywhere; what differs between
services is which formats they take, how many examples, whether images are allowed,
whether extra top-level keys or repeated roles are rejected. Sources are named per
rule set; facts the public documentation does not state are marked unverified.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DatasetRules", "RULES", "rules_for"]


@dataclass(frozen=True)
class DatasetRules:
    """What one service accepts. ``hosted``: its hard limits are errors (not warnings)."""

    service: str
    hosted: bool = True
    formats: tuple[str, ...] = ("chat", "preference", "completion")
    min_examples: int = 10
    max_examples: int | None = None
    images: bool = True
    image_data_urls_only: bool = False  # images must be inline base64 data URLs
    reserved_tokens: bool = True  # text may not contain <|endoftext|> and kin
    strict_top_level_keys: bool = False  # a top-level key the format does not use is rejected
    alternating_roles: bool = False  # two consecutive messages may not have the same role
    system_first: bool = False  # a system message may only come first
    source: str = ""

    @property
    def label(self) -> str:
        return {"openai": "OpenAI", "azure": "Azure OpenAI", "together": "Together AI", "fireworks": "Fireworks AI",
                "local": "the local trainer", "hosted": "hosted providers"}.get(self.service, "the target")


RULES: dict[str, DatasetRules] = {
    # OpenAI fine-tuning guide: at least 10 examples; chat, preference (DPO) and the legacy
    # prompt/completion format; vision parts in user messages; special tokens rejected.
    "openai": DatasetRules("openai", source="OpenAI fine-tuning guide"),
    # Azure OpenAI accepts the same files ("Fine-tuning jobs won't proceed without at least 10
    # training examples").
    "azure": DatasetRules("azure", source="Azure OpenAI fine-tuning docs"),
    # Together's client-side check_file (together-python utils/files.py): conversation,
    # instruction (prompt/completion) and preference formats; any extra top-level column
    # rejected; roles alternate; images only as base64 data URLs; at least 1 sample.
    "together": DatasetRules("together", min_examples=1, image_data_urls_only=True, reserved_tokens=False,
                             strict_top_level_keys=True, alternating_roles=True,
                             source="together-python check_file; docs.together.ai data formats"),
    # Fireworks: chat (system message optional, first) and preference data; 3 to 3,000,000
    # examples (docs.fireworks.ai fine-tuning-models). Image support for its vision models is
    # unverified: allowed here.
    "fireworks": DatasetRules("fireworks", formats=("chat", "preference"), min_examples=3,
                              max_examples=3_000_000, reserved_tokens=False, system_first=True,
                              source="docs.fireworks.ai fine-tuning"),
    # The local trainer: text-only models; small files are fine (a warning, not an error).
    "local": DatasetRules("local", hosted=False, formats=("chat", "preference"), images=False,
                          reserved_tokens=False, source="finetune-sdk's local trainer"),
}


def rules_for(service: str | None, *, hosted: bool | None = None, images: bool = True) -> DatasetRules:
    """The rules of ``service``, or generic ones: hosted (OpenAI's limits, the strictest) or not."""
    if service in RULES:
        return RULES[service]
    return DatasetRules("hosted" if hosted else "generic", hosted=bool(hosted), images=images)
