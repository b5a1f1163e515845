"""Core pieces every other module builds on (device resolution)."""
from .device import HOST, DeviceError, device_info, device_of, fits, generator, is_gpu, resolve_device

__all__ = ["HOST", "DeviceError", "device_info", "device_of", "fits", "generator", "is_gpu", "resolve_device"]
