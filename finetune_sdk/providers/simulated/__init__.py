"""The simulated backend: a deterministic, in-process imitation of hosted fine-tuning
services, on a clock you control. Behind :mod:`finetune_sdk.server` it is the emulator.

- :mod:`.provider` — :class:`SimulatedProvider`, the lifecycle shared by every service;
- :mod:`.flavors` — what each imitated service says (ids, statuses, events, error codes);
- :mod:`.clock` — simulated time and phase durations.
"""

from .clock import SimClock, SimTimings
from .flavors import FLAVORS, Flavor
from .provider import SimulatedProvider, SimulatedSettings

__all__ = ["SimClock", "SimTimings", "SimulatedProvider", "SimulatedSettings", "Flavor", "FLAVORS"]
