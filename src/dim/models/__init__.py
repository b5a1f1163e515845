"""Model registry and the models of the paper. Importing this package registers them all."""
from .binarize import Binarize, GradientMode, gradient_mode, has_binarization, set_gradient_mode
from .registry import ModelEntry, create_model, get_entry, list_models, register_model
from . import abs as _abs  # noqa: F401  (registers abs, biabs)
from . import cnn as _cnn  # noqa: F401  (registers cnn, bicnn, madry)
from . import dim as _dim  # noqa: F401  (registers dim, bidim, im, single_im, dn_single_im)
from . import ensemble as _ensemble  # noqa: F401  (registers ensemble; after the models it is made of)

__all__ = ["Binarize", "GradientMode", "ModelEntry", "create_model", "get_entry", "gradient_mode", "has_binarization",
           "list_models", "register_model", "set_gradient_mode"]
