"""The one place that decides which device ``dim`` computes on.

The device is resolved once, at the edge (CLI option ``--device``, the API's
``device=`` argument, else the environment variable ``DIM_DEVICE``, else
``auto``), and handed down; everything below derives it from that value or from
the model it was given (:func:`device_of`). Nothing else names a device, so
``--device cpu`` keeps every tensor on the CPU even when a GPU is present.

Accepted values: ``auto`` (the first CUDA GPU torch sees, else the CPU), ``cpu``,
``cuda`` (= ``cuda:0``) and ``cuda:N``.
"""
from __future__ import annotations

import os
import platform
import re
from typing import Any, Union

import torch
import torch.nn as nn

ENV = "DIM_DEVICE"
CHOICES = ("auto", "cpu", "cuda", "cuda:N")
DeviceLike = Union[str, torch.device, None]


HOST = torch.device("cpu")   # where arrays go to be stored, and data that does not fit on the device


class DeviceError(ValueError):
    """A device that cannot be used here; the message says which and why."""


def resolve_device(spec: DeviceLike = None) -> torch.device:
    """``spec`` (or ``$DIM_DEVICE``, or ``auto``) as a :class:`torch.device` that exists here."""
    origin = "device"
    if spec is None:
        env = os.environ.get(ENV, "").strip()
        spec, origin = (env, f"${ENV}") if env else ("auto", "device")
    text = str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else HOST
    if text == "cpu":
        return HOST
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m is None:
        raise DeviceError(f"{origin} {spec!r}: unknown device; expected one of {', '.join(CHOICES)}")
    if not torch.cuda.is_available():
        raise DeviceError(f"{origin} {spec!r}: torch {torch.__version__} sees no CUDA GPU "
                          f"({'a CPU-only build' if torch.version.cuda is None else 'no GPU or driver found'}); "
                          "use --device cpu or auto")
    index, count = int(m.group(1) or 0), torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"{origin} {spec!r}: there {'is' if count == 1 else 'are'} only {count} CUDA "
                          f"device{'s' if count != 1 else ''} (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def is_gpu(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def fits(nbytes: int, device: torch.device | str, share: float = 0.5) -> bool:
    """Whether ``nbytes`` may live on ``device``: always on the CPU, within ``share`` of a GPU's free memory."""
    device = torch.device(device)
    if not is_gpu(device):
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= free * share


def device_of(module: nn.Module | Any) -> torch.device:
    """The device of ``module``'s first parameter or buffer (the CPU for a module without any)."""
    if isinstance(module, nn.Module):
        for t in module.parameters():
            return t.device
        for t in module.buffers():
            return t.device
    return HOST


def generator(device: torch.device | str, seed: int) -> torch.Generator:
    """A random generator on ``device`` seeded with ``seed``: on one device, one seed, one stream."""
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def device_info(device: torch.device | str) -> dict[str, Any]:
    """What computed a result: device, its name, torch and CUDA versions (for cards and provenance)."""
    device = torch.device(device)
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["device"] = f"cuda:{index}"
        info["name"] = torch.cuda.get_device_name(index)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(index)))
    else:
        info["name"] = cpu_model() or platform.processor() or platform.machine() or "cpu"
        info["isa"] = torch.backends.cpu.get_cpu_capability()   # the widest vector kernels torch uses: AVX2, AVX512...
        info["threads"] = torch.get_num_threads()
    return info


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The CPU's model name as the kernel reports it (Linux), or None: speed figures depend on it, and
    ``platform.processor()`` says only ``x86_64`` there."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        return None
    return None


def describe(info: dict[str, Any] | None) -> str:
    """One line for a report: ``cuda:0 (NVIDIA H100 80GB HBM3), torch 2.11.0, CUDA 13.0``."""
    if not info:
        return "not recorded"
    cuda = f", CUDA {info['cuda']}" if info.get("cuda") else ""
    return f"{info.get('device')} ({info.get('name')}), torch {info.get('torch')}{cuda}"
