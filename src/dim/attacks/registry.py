"""The attack-adapter registry: ``register_adapter`` / ``ADAPTERS``.

``ADAPTERS`` maps an ``AttackSpec.attack`` key to a runner of ours,
``run(spec, model, x, y, seed, **kw) -> Unverified`` (candidates only: the evaluation verifies them); any other key is a foolbox class run by
:func:`dim.attacks.foolbox_adapter.run_foolbox`. Registering a key twice warns, and the later
registration wins (as for models).
"""
from __future__ import annotations

import warnings
from typing import Callable

ADAPTERS: dict[str, Callable] = {}


class NotApplicable(Exception):
    """The attack does not apply to this model (BPDA on a model without binarization).

    The runner records the shard as ``skipped`` with the message; it is neither a
    failure nor a result, and tables show the attack as n/a for that model.
    """


def register_adapter(key: str) -> Callable[[Callable], Callable]:
    def deco(fn: Callable) -> Callable:
        if key in ADAPTERS:
            warnings.warn(f"attack adapter {key!r} registered twice; the later registration wins", stacklevel=2)
        ADAPTERS[key] = fn
        return fn
    return deco


def adapters() -> dict[str, Callable]:
    """``ADAPTERS`` with ours registered: :mod:`.adaptive` (torch and its attacks) is imported on first use, so that
    reading a suite's names and specs does not import torch."""
    from . import adaptive  # noqa: F401  (registers the adaptive suite's adapters)
    return ADAPTERS


def list_adapters() -> list[str]:
    return sorted(adapters())
