"""The local backend: fine-tune open-weight chat models on your own hardware.

Needs the ``local`` extra (``pip install 'finetune-sdk[local]'``): torch, transformers,
peft, accelerate, safetensors and gguf. Nothing heavy is imported here or in any
subpackage's ``__init__``; modules import torch and transformers only when they need them.

- :mod:`.provider` — ``LocalProvider``: the provider API over everything below.
- :mod:`.models` — base-model resolution: aliases, the embedded default
  (SmolLM2-135M-Instruct), Hugging Face Hub ids and local model directories.
- :mod:`.jobs` — the on-disk job and file registry, and the trainer's settings.
- :mod:`.training` — the job process and the trainer with its kernels.
- :mod:`.serving` — model hosting, batched generation, the background server.
- :mod:`.publish` — exports (adapter, merged, GGUF) and pushing to the Hugging Face Hub.
"""
