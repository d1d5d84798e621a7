"""``python -m finetune_sdk`` is the ``finetune`` command."""

from .cli import main

main()
