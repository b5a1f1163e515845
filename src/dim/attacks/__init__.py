"""Attacks: suites as data (:mod:`.suites`), the adapter registry (:mod:`.registry`) and the functions that run
them. Importing this package registers every adapter of ours."""
from __future__ import annotations

from . import adaptive as _adaptive  # noqa: F401  (registers the adaptive suite's adapters)
from .registry import ADAPTERS, NotApplicable, list_adapters, register_adapter
from .suites import SUITES, counts_per_norm, get_suite
from .spec import AttackSpec

__all__ = ["ADAPTERS", "AttackSpec", "NotApplicable", "SUITES", "counts_per_norm", "get_suite", "list_adapters",
           "register_adapter"]
