"""The Ray executor: units as Ray tasks on a local or existing cluster; results come back as they finish.

- Cluster: ``ray_address`` (or ``$RAY_ADDRESS``) joins a running cluster (``ray start --head`` on the
  head node); without one, a local cluster is started on this machine's cores and shut down at the end.
- Models travel by value through Ray's object store, put there once per run: a model directory's
  ``model.safetensors`` and ``card.json`` (the worker checks the card's sha256 against the driver's
  before loading), anything else as the module itself (its class must be importable on the worker).
  Each worker process loads a model once and keeps it for the units that follow.
- Each unit is a task asking for one CPU (Ray then runs torch on one thread) and, when the run's device
  is CUDA, ``gpu_share`` of a GPU. A worker that dies mid-unit is retried by Ray (``max_retries``); an
  exception inside an attack is not a Ray failure: :func:`~dim.evaluation.execute.execute` returns it as
  a failed unit, which the driver stores once.
- Workers never open the run directory: the driver commits every result.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from ..execute import execute
from ..units import Unit, UnitResult

MAX_RETRIES = 3     # a unit whose worker dies is retried this many times, then stored as failed


def import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install 'dim[ray]' (or scripts/bootstrap.sh, which "
                         "installs it)") from None
    return ray


@dataclass(frozen=True)
class ModelPayload:
    """A model as it travels to a worker: a model directory's files, a model file (TorchScript, torch.export,
    or a state dict with its factory, whose file travels too when it was given as one), or the module itself."""
    key: str
    identity: str
    files: dict[str, bytes] | None = None
    card_sha256: str | None = None
    module: nn.Module | None = None
    model_file: tuple[str, bytes] | None = None          # (file name, contents)
    factory: str | None = None                          # package.module:function, or file.py:function
    factory_file: tuple[str, bytes] | None = None        # (file name, contents) when the factory is a file

    @classmethod
    def of(cls, m: Any) -> "ModelPayload":
        """From an ``EvalModel``: its directory's files when it came from one, else a CPU copy of the module."""
        model_dir = m.card.get("dir") if m.card_sha256 else None
        if model_dir and Path(model_dir).is_dir():
            from ...checkpoint import CARD, WEIGHTS
            files = {name: (Path(model_dir) / name).read_bytes() for name in (WEIGHTS, CARD)}
            if hashlib.sha256(files[CARD]).hexdigest() != m.card_sha256:
                raise ValueError(f"{model_dir}: card.json changed since the model was loaded; rerun")
            return cls(m.key, m.card_sha256, files=files, card_sha256=m.card_sha256)
        if m.card.get("file") and m.card.get("format"):      # TorchScript and exported programs do not pickle
            path = Path(m.card["file"])
            factory, factory_file = m.card.get("factory"), None
            if factory and ":" in factory:
                where, _, fn = factory.rpartition(":")
                if where.endswith(".py") or "/" in where:
                    factory_file = (Path(where).name, Path(where).expanduser().read_bytes())
                    factory = f"{Path(where).name}:{fn}"
            return cls(m.key, f"file sha256 {m.card.get('file_sha256')}", model_file=(path.name, path.read_bytes()),
                       factory=factory, factory_file=factory_file)
        import copy
        import uuid
        return cls(m.key, f"module {uuid.uuid4()}", module=copy.deepcopy(m.model).to("cpu"))

    def load(self, device: torch.device) -> nn.Module:
        if self.module is not None:
            return self.module.to(device).eval()
        if self.model_file is not None:
            from ...models.files import load_model_file
            with tempfile.TemporaryDirectory(prefix="dim-model-") as tmp:
                (Path(tmp) / self.model_file[0]).write_bytes(self.model_file[1])
                factory = self.factory
                if self.factory_file is not None:
                    (Path(tmp) / self.factory_file[0]).write_bytes(self.factory_file[1])
                    factory = str(Path(tmp) / self.factory)
                model, _ = load_model_file(Path(tmp) / self.model_file[0], factory)
            return model.to(device).eval()
        from ...checkpoint import CARD, load_model
        assert self.files is not None
        if hashlib.sha256(self.files[CARD]).hexdigest() != self.card_sha256:
            raise ValueError(f"model {self.key!r}: the card received differs from the driver's")
        with tempfile.TemporaryDirectory(prefix="dim-model-") as tmp:
            for name, data in self.files.items():
                (Path(tmp) / name).write_bytes(data)
            return load_model(tmp, device=device)


_LOADED: dict[tuple[str, str], tuple[nn.Module, str]] = {}   # per worker process: (identity, device) -> model
_KEEP = 8          # models a worker keeps loaded (a long-lived cluster serves many runs)


def run_unit(unit: Unit, payload: ModelPayload, device: str, threads: int | None = None) -> UnitResult:
    """The task: load (once per worker) and execute (with ``threads`` CPU threads; Ray's default is one)."""
    from ...core.device import describe, device_info
    from ...core.memory import reuse_freed_memory
    reuse_freed_memory()       # a worker process runs unit after unit, as the command line's own process does
    got = _LOADED.get((payload.identity, device))
    if got is None:
        dev = torch.device(device)
        while len(_LOADED) >= _KEEP:
            _LOADED.pop(next(iter(_LOADED)))
        got = _LOADED[(payload.identity, device)] = (payload.load(dev), describe(device_info(dev)))
    model, label = got
    return execute(unit, model, label, threads)


def _python_path() -> str:
    """This process's import path, so that the workers of a local cluster import what the driver imports."""
    return os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))


def connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address`` (else ``$RAY_ADDRESS``), or start a local one on this machine's cores
    with this process's import path; True if this call started or joined it (and should shut it down)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    opts: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    if address:
        ray.init(address=address, **opts)
    else:   # "local": a new cluster even if another one runs on this machine
        ray.init(address="local", num_cpus=os.cpu_count(), runtime_env={"env_vars": {"PYTHONPATH": _python_path()}}, **opts)
    return True


def check_reachable(address: str | None, timeout: float = 3.0) -> None:
    """Refuse, within seconds, a cluster address where nothing answers (Ray itself retries for about 20 s and
    prints pages of warnings); ``auto``, ``local`` and no address are Ray's own lookups and pass."""
    if not address or address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--ray-address {address}: expected HOST:PORT (e.g. 10.0.0.5:6379 or ray://head:10001), "
                         "'auto', or none for a local cluster")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ValueError(f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); start the cluster "
                         "('ray start --head' on its head node) or leave --ray-address out for a local one") from None


def remote_task(ray: Any, fn: Any, gpu: bool, share: float) -> Any:
    """``fn`` as a Ray task: one CPU (torch then runs one thread), ``share`` of a GPU when the run is on CUDA,
    retried when its worker dies, never for an exception of its own."""
    return ray.remote(fn).options(num_cpus=1, num_gpus=share if gpu else 0, max_retries=MAX_RETRIES,
                                  retry_exceptions=False)


class RayExecutor:
    def __init__(self, spec: Any, device: torch.device):
        self._ray = import_ray()
        self._address = spec.ray_address
        self._threads = getattr(spec, "threads", None)
        check_reachable(self._address or os.environ.get("RAY_ADDRESS"))   # before the run directory is touched
        self._gpu = torch.device(device).type == "cuda"
        self._share = float(spec.gpu_share)
        self._device = "cuda" if self._gpu else "cpu"
        self._owns = False
        self._refs: dict[str, Any] = {}
        self._inflight: dict[Any, Unit] = {}

    def start(self, models: Sequence[Any]) -> None:
        ray = self._ray
        self._owns = connect(ray, self._address)
        resources = ray.cluster_resources()
        cpus = max(1, int(resources.get("CPU", 1)))
        if self._gpu:
            gpus = resources.get("GPU", 0)
            if gpus <= 0:
                raise ValueError("--device cuda with --executor ray: the Ray cluster has no GPU")
            cpus = max(1, min(cpus, int(gpus / self._share)))
        self._capacity = 2 * cpus
        self._refs = {m.key: ray.put(ModelPayload.of(m)) for m in models}
        self.remote_task = remote_task(ray, run_unit, self._gpu, self._share)

    @property
    def capacity(self) -> int:
        return self._capacity

    def submit(self, unit: Unit) -> None:
        self._inflight[self.remote_task.remote(unit, self._refs[unit.model], self._device, self._threads)] = unit

    def next_result(self) -> tuple[Unit, UnitResult]:
        ray = self._ray
        (ref,), _ = ray.wait(list(self._inflight), num_returns=1)
        unit = self._inflight.pop(ref)
        try:
            return unit, ray.get(ref)
        except (ray.exceptions.RayError, OSError) as exc:   # the worker died MAX_RETRIES + 1 times, or the node
            return unit, UnitResult(unit.key, "failed", 0.0, None, f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        for ref in self._inflight:
            self._ray.cancel(ref, force=True)
        self._inflight.clear()
        if self._owns:
            self._ray.shutdown()
