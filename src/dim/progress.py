"""Progress bars (rich) for every step that takes more than a few seconds.

Bars go to stderr so that stdout stays machine-readable; ``DIM_NO_PROGRESS=1``
or ``enabled=False`` turns them off (tests, logs).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

_console = Console(stderr=True)


def enabled_by_default() -> bool:
    return os.environ.get("DIM_NO_PROGRESS", "") in ("", "0")


@contextlib.contextmanager
def progress_bar(enabled: bool | None = None) -> Iterator[Progress]:
    """A rich Progress with description, bar, count, elapsed time and ETA."""
    enabled = enabled_by_default() if enabled is None else enabled
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn(), console=_console, disable=not enabled, transient=False)
    with bar:
        yield bar


def log(message: str) -> None:
    _console.print(message, soft_wrap=True, highlight=False, markup=False)   # paths stay whole
