"""Core pieces every other module builds on (device resolution)."""
from .device import DeviceError, device_info, device_of, generator, resolve_device

__all__ = ["DeviceError", "device_info", "device_of", "generator", "resolve_device"]
