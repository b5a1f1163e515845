"""dim: Denoised Internal Models and an honest adversarial-robustness evaluation."""
from typing import Any

from . import data
from .checkpoint import CheckpointError, load_model
from .models import GradientMode, create_model, list_models, set_gradient_mode

__version__ = "0.1.0"
__all__ = ["CheckpointError", "GradientMode", "create_model", "data", "evaluate", "list_models", "load_model",
           "set_gradient_mode"]


def __getattr__(name: str) -> Any:
    # ``dim.evaluate`` pulls in foolbox and the runner; import it on first use so that
    # ``import dim`` (and the CLI's --help) stays fast.
    if name == "evaluate":
        from .api import evaluate
        return evaluate
    raise AttributeError(f"module 'dim' has no attribute {name!r}")
