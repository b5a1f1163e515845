"""The serial executor: every unit in this process, one after the other, in plan order (the default)."""
from __future__ import annotations

from collections import deque
from typing import Any, Sequence

from ...core.device import describe, device_info
from ..execute import execute
from ..units import Unit, UnitResult


class SerialExecutor:
    capacity = 1

    def __init__(self, spec: Any, device: Any):
        self._label = describe(device_info(device))
        self._models: dict[str, Any] = {}
        self._queue: deque[Unit] = deque()
        self._threads = getattr(spec, "threads", None)

    def start(self, models: Sequence[Any]) -> None:
        self._models = {m.key: m.model for m in models}

    def submit(self, unit: Unit) -> None:
        self._queue.append(unit)

    def next_result(self) -> tuple[Unit, UnitResult]:
        unit = self._queue.popleft()
        return unit, execute(unit, self._models[unit.model], self._label, self._threads)

    def close(self) -> None:
        self._queue.clear()
