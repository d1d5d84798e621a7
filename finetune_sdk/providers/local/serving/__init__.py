"""Serving local models: which model id means which weights, generation, and the background server.

:mod:`.host` (``ModelHost``) resolves a request's model id to an engine and adapter inside
the server process, and keeps the deployment registry and the background server;
:mod:`.inference` (``Engine``) batches generation over one base model and its LoRA
adapters. Only :mod:`.inference` and the host's engine loading import torch.
"""
