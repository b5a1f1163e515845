"""Provenance recorded with every trained model and every run."""
from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

_PACKAGES = ("dim", "torch", "numpy", "safetensors", "foolbox", "pyautoattack", "scikit-learn", "matplotlib")


def git_commit() -> str:
    """The commit of the source tree this package runs from, with ``+dirty`` if modified."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def commits_of(prov: dict) -> list[str]:
    """The commits a run was computed with, oldest first: a resumed run may span several (stores written
    before this was recorded have only the last one, ``git_commit``)."""
    return list(prov.get("git_commits") or ([prov["git_commit"]] if prov.get("git_commit") else []))


def devices_of(prov: dict) -> list[dict]:
    """Every device a run was computed on (stores written before this was a list have one, ``device``)."""
    return list(prov.get("devices") or ([prov["device"]] if prov.get("device") else []))


def with_commit(prov: dict, commit: str) -> dict:
    """``prov`` with ``commit`` as the current commit, added to the run's commits if new."""
    seen = commits_of(prov)
    return {**prov, "git_commit": commit, "git_commits": seen + ([commit] if commit not in seen else [])}


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
