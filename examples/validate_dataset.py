"""Validate a fine-tuning dataset and estimate its cost before spending anything.

    python examples/validate_dataset.py [TRAIN.jsonl [VALIDATION.jsonl]] [--model MODEL]

Without arguments it checks the dataset bundled with finetune-sdk. Exits 1 if the
dataset has errors, like `finetune validate`.
"""

from __future__ import annotations

import argparse
import sys

from finetune_sdk import validate
from finetune_sdk.datasets import path as bundled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train", nargs="?", default=str(bundled("contacts", "train")))
    parser.add_argument("validation", nargs="?", default=None)
    parser.add_argument("--model", default="gpt-4o-mini-2024-07-18")
    args = parser.parse_args()

    validation = args.validation or (str(bundled("contacts", "validation")) if args.validation is None
                                     and args.train == str(bundled("contacts", "train")) else None)
    report = validate(args.train, model=args.model, validation_file=validation)

    print(report.summary())
    for issue in (report.errors + report.warnings)[:20]:
        print(f"  {issue}")
    if report.tokens:
        t = report.tokens
        print(f"tokens ({t.encoding}, {'exact' if t.exact else 'estimated'}): total {t.total_tokens:,}, "
              f"median {t.per_example.median:,.0f} per example, p90 {t.per_example.p90:,.0f}")
    if report.estimate:
        e = report.estimate
        cost = f"${e.cost:,.2f}" if e.cost is not None else "unknown"
        print(f"estimate: {e.n_epochs} epochs x {e.tokens_per_epoch:,} tokens = {e.billed_tokens:,} billed; "
              f"cost {cost}")
    if report.validation is not None:
        print(report.validation.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
