"""Attacks: suites as data (:mod:`.suites`) and the functions that run them.

``ADAPTERS`` maps an ``AttackSpec.attack`` key to a runner of ours
``run(spec, model, x, y, seed, **kw) -> Verified``; any other key is a foolbox
class run by :func:`.foolbox_adapter.run_foolbox`.
"""
from __future__ import annotations

from typing import Callable

from .suites import SUITES, AttackSpec, counts_per_norm, get_suite

ADAPTERS: dict[str, Callable] = {}


class NotApplicable(Exception):
    """The attack does not apply to this model (BPDA on a model without binarization).

    The runner records the shard as ``skipped`` with the message; it is neither a
    failure nor a result, and tables show the attack as n/a for that model.
    """


def register_adapter(key: str) -> Callable[[Callable], Callable]:
    def deco(fn: Callable) -> Callable:
        ADAPTERS[key] = fn
        return fn
    return deco


__all__ = ["ADAPTERS", "AttackSpec", "NotApplicable", "SUITES", "counts_per_norm", "get_suite", "register_adapter"]


from . import adaptive as _adaptive  # noqa: E402,F401  (registers the adaptive suite's adapters)
