"""Attacks: suites as data (:mod:`.suites`), the adapter registry (:mod:`.registry`) and the functions that run
them. ``ADAPTERS`` holds every adapter of ours: its first use imports them (and torch); the
suites and their specs are read without it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .registry import NotApplicable, adapters, list_adapters, register_adapter
from .spec import AttackSpec
from .suites import SUITES, counts_per_norm, get_suite

if TYPE_CHECKING:
    from .registry import ADAPTERS

__all__ = ["ADAPTERS", "AttackSpec", "NotApplicable", "SUITES", "adapters", "counts_per_norm", "get_suite",
           "list_adapters", "register_adapter"]


def __getattr__(name: str) -> Any:
    if name == "ADAPTERS":
        return adapters()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
