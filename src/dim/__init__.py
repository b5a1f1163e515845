"""dim: Denoised Internal Models and an honest adversarial-robustness evaluation.

The public names are imported on first use: ``import dim`` and the CLI's commands that only read (``--help``,
``dim status``, ``dim data``) start without importing torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import data
    from .api import evaluate
    from .checkpoint import CheckpointError, load_model
    from .core.memory import reuse_freed_memory
    from .models import GradientMode, create_model, list_models, set_gradient_mode

__version__ = "0.1.0"
__all__ = ["CheckpointError", "GradientMode", "create_model", "data", "evaluate", "list_models", "load_model",
           "reuse_freed_memory", "set_gradient_mode"]


def __getattr__(name: str) -> Any:
    if name == "data":   # the subpackage (``from . import data`` here would ask this function again)
        return importlib.import_module(".data", __name__)
    if name in ("CheckpointError", "load_model"):
        from . import checkpoint
        return getattr(checkpoint, name)
    if name in ("GradientMode", "create_model", "list_models", "set_gradient_mode"):
        from . import models
        return getattr(models, name)
    if name == "reuse_freed_memory":
        from .core.memory import reuse_freed_memory
        return reuse_freed_memory
    if name == "evaluate":
        from .api import evaluate
        return evaluate
    raise AttributeError(f"module 'dim' has no attribute {name!r}")
