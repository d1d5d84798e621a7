"""Backends. Each is a short translation table over the shared core (see base.py, and
http.py for providers of an HTTP API); docs/architecture.md explains how to write one."""

from .base import (ENTRY_POINT_GROUP, Capability, Provider, available_providers, get_provider_class, register_provider,
                   resolve_tokenizer, unregister_provider)
from .http import HTTPProvider, HTTPSettings, Transport

__all__ = ["Capability", "Provider", "HTTPProvider", "HTTPSettings", "Transport", "ENTRY_POINT_GROUP",
           "available_providers", "get_provider_class", "register_provider", "unregister_provider",
           "resolve_tokenizer"]
