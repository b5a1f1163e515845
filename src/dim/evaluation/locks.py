"""One process per unit of work: a shard being computed is locked, and a second process skips it.

``dim evaluate --only`` lets several processes share a run; two of them on the same
(model, attack, shard) would compute it twice, and the second would then fail to store
it. Each shard is computed under an exclusive ``flock`` on its own file in
``RUN/.locks/``; a process that cannot take the lock leaves the shard to the one that
holds it. The kernel releases the lock when its holder exits, however it exits (SIGKILL
included), so a crashed process never leaves a shard locked. Works on one host, as
the SQLite store itself does.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from ..names import file_name

LOCK_DIR = ".locks"


def lock_path(run_dir: Path, model: str, attack: str, shard: int) -> Path:
    return Path(run_dir) / LOCK_DIR / file_name(model) / file_name(attack) / f"shard_{shard:05d}.lock"


@contextlib.contextmanager
def unit_lock(run_dir: Path, model: str, attack: str, shard: int) -> Iterator[bool]:
    """Yield True while this process holds the unit's lock, False if another process holds it."""
    path = lock_path(run_dir, model, attack, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
