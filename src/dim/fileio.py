"""Atomic file writes: write to a temporary name in the same folder, fsync, rename.

A reader (or a resumed run) therefore sees either the old file or the complete
new one, never a half-written file, whatever kills the writer. Given the folder a
file belongs to (``within``: a run, a report), a write refuses to go through a
symbolic link below that folder, so that nothing written or deleted there lands
elsewhere.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


class LinkError(ValueError):
    """A path inside a run or report goes through a symbolic link; the message names the link."""


def check_no_links(path: Path, within: Path) -> Path:
    """``path`` itself and every folder between ``within`` and it are no symbolic links (``within`` itself may be
    one: a run kept on another disk); else :class:`LinkError` naming the link."""
    path, within = Path(path), Path(within)
    try:
        rel = path.relative_to(within)
    except ValueError:
        raise LinkError(f"{path}: not inside {within}") from None
    current = within
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise LinkError(f"{current}: is a symbolic link inside {within}; dim neither writes nor deletes through "
                            "links there (make it a real folder or file, or remove it)")
    return path


def atomic_write(path: Path, write: Callable[[BinaryIO], None], within: Path | None = None) -> Path:
    path = Path(path)
    if within is not None:
        check_no_links(path, within)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes, within: Path | None = None) -> Path:
    return atomic_write(path, lambda fh: fh.write(data), within)


def atomic_write_text(path: Path, text: str, within: Path | None = None) -> Path:
    return atomic_write_bytes(path, text.encode(), within)
