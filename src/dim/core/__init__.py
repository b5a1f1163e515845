"""What every other part of the package builds on: the device resolver, the threat models (norms,
thresholds, distances) and the verification gate every adversarial passes before it counts."""
from .device import HOST, DeviceError, device_info, device_of, fits, generator, is_gpu, resolve_device
from .norms import Norm, ThreatModel, distances
from .verify import verify

__all__ = ["HOST", "DeviceError", "Norm", "ThreatModel", "device_info", "device_of", "distances", "fits", "generator",
           "is_gpu", "resolve_device", "verify"]
