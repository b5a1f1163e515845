"""Helpers shared by the benchmark scripts: timing and writing results files."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from dim.provenance import git_commit, package_versions

RESULTS = Path(__file__).resolve().parent / "results"


def median_seconds(fn: Callable[[], Any], repeats: int = 7, warmup: int = 2, device: Any = None) -> float:
    """Median wall time of ``fn``; on a CUDA ``device`` the device is synchronized around each call (its
    kernels run asynchronously)."""
    def sync() -> None:
        if device is not None and torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_result(name: str, payload: dict[str, Any], results: Path = RESULTS, echo: bool = True) -> Path:
    """Write ``results/<name>.json`` (or into ``results``) with provenance; returns its path."""
    folder = Path(results)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "git_commit": git_commit(), "packages": package_versions(), **payload}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    if echo:
        print(json.dumps(payload, indent=2, sort_keys=True))
    return path
