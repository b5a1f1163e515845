"""Executors: where units run. ``serial`` (this process, in plan order) and ``ray`` (a Ray cluster).

An executor receives units the driver has planned and whose dependencies are
committed, runs :func:`dim.evaluation.execute.execute` on them somewhere, and hands
the results back as they finish; it never sees the store. Entries are import paths,
so that Ray is imported only when asked for.
"""
from __future__ import annotations

import importlib
from typing import Any, Protocol, Sequence

from ..units import Unit, UnitResult

EXECUTORS: dict[str, str] = {
    "serial": "dim.evaluation.executors.serial:SerialExecutor",
    "ray": "dim.evaluation.executors.ray_executor:RayExecutor",
}


class Executor(Protocol):
    """Runs units; results come back in any order."""

    def start(self, models: Sequence[Any]) -> None:
        """Make the models (``EvalModel``) available to wherever units run."""

    @property
    def capacity(self) -> int:
        """How many units to keep submitted at once."""

    def submit(self, unit: Unit) -> None: ...

    def next_result(self) -> tuple[Unit, UnitResult]:
        """Block until a submitted unit has finished; that unit and its result."""

    def close(self) -> None: ...


def get_executor(name: str, spec: Any, device: Any) -> Executor:
    """The executor registered as ``name``, for a run spec and the resolved device."""
    try:
        target = EXECUTORS[name]
    except KeyError:
        raise ValueError(f"executor {name!r}: expected one of {sorted(EXECUTORS)}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(spec, device)
