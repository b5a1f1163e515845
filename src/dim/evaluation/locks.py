"""The run lock: one driver per run directory.

The driver is the only writer of a run (its store, its adversarials), so a second
``dim evaluate`` or ``dim reproduce`` on the same run directory is refused at once,
with the other process named, instead of failing later on a duplicate row or
computing every unit twice. The lock is an exclusive ``flock`` on ``RUN/.lock``; the
kernel releases it when its holder exits, however it exits (SIGKILL included), so
the file a killed driver leaves behind never blocks the rerun. Works on one host, as
the SQLite store itself does; on a cluster the driver runs on one node and the
workers never touch the run directory.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from ..fileio import check_no_links

LOCK_FILE = ".lock"


class RunLockedError(RuntimeError):
    """Another process is the driver of this run."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    return (f"process {info.get('pid', '?')} on {info.get('host', '?')}, since {info.get('since', '?')}: "
            f"{info.get('command', '?')}")


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``RUN/.lock`` for the duration; raise :class:`RunLockedError` naming the holder if another
    process holds it."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: is a file, not a run directory; give --run a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = check_no_links(run_dir / LOCK_FILE, run_dir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(f"{run_dir}: another dim process is running this evaluation ({_holder(path)}); "
                                 "wait for it to finish, or stop it and rerun this command") from None
        try:
            me = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv)}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
