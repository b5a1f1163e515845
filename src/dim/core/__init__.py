"""What every other part of the package builds on: the device resolver, the threat models (norms,
thresholds, distances) and the verification gate every adversarial passes before it counts
(:func:`dim.core.verify.verify`).

The device names below are importable from ``dim.core`` too, imported on first use: what needs only the threat
models (the dataset catalogue, ``dim status``) does not import torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .norms import Norm, ThreatModel, distances

if TYPE_CHECKING:
    from .device import HOST, DeviceError, device_info, device_of, fits, generator, is_gpu, resolve_device

__all__ = ["HOST", "DeviceError", "Norm", "ThreatModel", "device_info", "device_of", "distances", "fits", "generator",
           "is_gpu", "resolve_device"]


def __getattr__(name: str) -> Any:
    if name in __all__:      # not imported above: a device name
        from . import device
        return getattr(device, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
