"""Backends. Each is a short translation table over the shared core (see base.py)."""

from .base import (ENTRY_POINT_GROUP, Capability, Provider, available_providers, get_provider_class,
                   register_provider, unregister_provider)

__all__ = ["Capability", "Provider", "ENTRY_POINT_GROUP", "available_providers", "get_provider_class",
           "register_provider", "unregister_provider"]
