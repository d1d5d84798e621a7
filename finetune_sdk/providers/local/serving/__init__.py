"""Serving local models: which model id means which weights, generation, and the background server.

:mod:`.host` (``ModelHost``) resolves a request's model id to an engine and adapter inside
the server process; :mod:`.inference` (``Engine``) batches generation over one base model
and its LoRA adapters; :mod:`.deployments` is the registry of deployment names;
:mod:`.background` starts, finds and stops the one background server of a
``FINETUNE_HOME``. Only :mod:`.inference` and the host's engine loading import torch.
"""
