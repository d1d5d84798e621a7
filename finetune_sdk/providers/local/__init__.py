"""The local backend: fine-tune open-weight chat models on your own hardware.

Needs the ``local`` extra (``pip install 'finetune-sdk[local]'``): torch, transformers,
peft, accelerate, safetensors and gguf. Nothing heavy is imported here; the submodules
import torch and transformers only when they actually need them.

- :mod:`.models` — base-model resolution: aliases, the embedded default
  (SmolLM2-135M-Instruct), Hugging Face Hub ids and local model directories.
"""
