"""dim: Denoised Internal Models and an honest adversarial-robustness evaluation."""
from . import data
from .checkpoint import CheckpointError, load_model
from .models import GradientMode, create_model, list_models, set_gradient_mode

__version__ = "0.1.0"
__all__ = ["CheckpointError", "GradientMode", "create_model", "list_models", "load_model", "set_gradient_mode"]
