"""Convert an alpaca-style dataset to chat JSONL, split it, and validate the result.

    python examples/convert_dataset.py [OUTPUT_DIR]

Writes a small alpaca file first (so the example runs anywhere), then converts, splits
90/10 with a fixed seed, and validates the two files together.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from finetune_sdk.data import convert, split, validate


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="finetune-convert-"))
    out.mkdir(parents=True, exist_ok=True)
    alpaca = out / "alpaca.jsonl"
    with open(alpaca, "w", encoding="utf-8") as f:
        for i in range(40):
            f.write(json.dumps({"instruction": "Spell the number in English words.", "input": str(i),
                                "output": f"number {i}"}) + "\n")
        f.write(json.dumps({"instruction": "Spell the number in English words.", "input": "0",
                            "output": "number 0"}) + "\n")  # a duplicate: dropped
        f.write("this line is not JSON\n")                     # skipped, with its line number

    result = convert(alpaca, out / "chat.jsonl", from_format="alpaca")
    print(f"converted {result.written} examples, dropped {result.duplicates} duplicate(s), "
          f"skipped {result.skipped_count}:")
    for issue in result.skipped:
        print(f"  line {issue.line}: {issue.message}")

    parts = split(out / "chat.jsonl", validation_fraction=0.1, seed=42)
    print(f"split: {parts.train_examples} train -> {parts.train}, {parts.validation_examples} validation -> "
          f"{parts.validation}")

    report = validate(parts.train, model="gpt-4o-mini-2024-07-18", validation_file=parts.validation)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
