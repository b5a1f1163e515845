"""Attacks: suites as data (:mod:`.suites`) and the functions that run them.

``ADAPTERS`` maps an ``AttackSpec.attack`` key to a runner of ours
``run(spec, model, x, y, seed, **kw) -> Verified``; any other key is a foolbox
class run by :func:`.foolbox_adapter.run_foolbox`.
"""
from __future__ import annotations

from typing import Callable

from .suites import SUITES, AttackSpec, counts_per_norm, get_suite

ADAPTERS: dict[str, Callable] = {}


def register_adapter(key: str) -> Callable[[Callable], Callable]:
    def deco(fn: Callable) -> Callable:
        ADAPTERS[key] = fn
        return fn
    return deco


__all__ = ["ADAPTERS", "AttackSpec", "SUITES", "counts_per_norm", "get_suite", "register_adapter"]
