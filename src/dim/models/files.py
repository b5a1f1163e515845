"""A model as users have it: a TorchScript file, a ``torch.export`` program, or a state dict and the function that
builds its architecture (a factory, named as ``package.module:function`` or ``path/to/file.py:function``).

Nothing here unpickles arbitrary objects: state dicts are read with ``weights_only=True`` (or from safetensors), and a
whole pickled module is refused with what to save instead.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

FORMATS = ("torchscript", "torch.export", "state dict")


class ModelFileError(ValueError):
    """A model file or factory cannot be used; the message says what was found and what is expected."""


class ExportedModule(nn.Module):
    """A ``torch.export`` program as a model. Its graph was fixed when it was exported, and its module refuses
    ``train()`` / ``eval()``: the mode is recorded here and not passed down, which changes nothing in the graph."""

    def __init__(self, program: nn.Module):
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> "ExportedModule":
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


def file_format(path: Path) -> str:
    """Which of :data:`FORMATS` ``path`` holds, from its contents (not its suffix)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return "state dict"
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{path}: not a model file torch can read ({exc}); expected a TorchScript file "
                             "(torch.jit.save), a torch.export program (torch.export.save), or a state dict "
                             "(torch.save(model.state_dict()) or safetensors) with --model-factory") from None
    tails = {n.split("/", 1)[-1] for n in names}
    if "archive_format" in tails or any(t.startswith("models/") and t.endswith(".json") for t in tails):
        return "torch.export"
    if "constants.pkl" in tails and any(t.startswith("code/") for t in tails):
        return "torchscript"
    return "state dict"


def resolve_factory(spec: str | Callable[[], nn.Module]) -> tuple[Callable[[], nn.Module], str]:
    """``package.module:function`` or ``path/to/file.py:function`` (either importable from the current directory),
    or a callable: the function and a label for it."""
    if callable(spec):
        return spec, getattr(spec, "__name__", type(spec).__name__)
    where, sep, fn_name = str(spec).rpartition(":")
    if not sep or not where or not fn_name:
        raise ModelFileError(f"model factory {spec!r}: expected package.module:function or path/to/file.py:function")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser()
        if not path.is_file():
            raise ModelFileError(f"model factory {spec!r}: {path} does not exist")
        name = "dim_factory_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ModelFileError(f"model factory {spec!r}: {path} is not a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module          # so that its classes pickle by reference (Ray) and dataclasses work
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise ModelFileError(f"model factory {spec!r}: importing {path} failed: {type(exc).__name__}: {exc}") from None
    else:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))     # importable from the current directory, as users expect
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ModelFileError(f"model factory {spec!r}: cannot import {where!r} ({exc}); give a module on "
                                 "PYTHONPATH or in the current directory, or a file: path/to/file.py:function") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ModelFileError(f"model factory {spec!r}: {where} has no function {fn_name!r}")
    return fn, fn_name


def build(factory: Callable[[], nn.Module], label: str) -> nn.Module:
    """The model ``factory()`` returns, checked to be a module."""
    model = factory()
    if not isinstance(model, nn.Module):
        raise ModelFileError(f"model factory {label!r} returned {type(model).__name__}, expected a torch.nn.Module")
    return model


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{path}: not a state dict ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                             "a whole pickled model is not loaded (it could run any code): save "
                             "model.state_dict() and give --model-factory, or save it with torch.jit.save or "
                             "torch.export.save") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]          # a training checkpoint that holds the weights under 'state_dict'
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f"{path}: holds {type(obj).__name__}, not a state dict (names -> tensors)")
    return obj


def load_model_file(path: Path | str, factory: str | Callable[[], nn.Module] | None = None,
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """The model in ``path`` (in eval mode, on the CPU) and what to record about it (format, file, factory)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    kind = file_format(path)
    info: dict[str, Any] = {"file": str(path.resolve()), "format": kind}
    if kind == "torchscript":
        model = torch.jit.load(str(path), map_location="cpu")
    elif kind == "torch.export":
        model = ExportedModule(torch.export.load(str(path)).module())
    else:
        if factory is None:
            raise ModelFileError(f"{path}: a state dict holds weights, not the architecture; give the function that "
                                 "builds the model: --model-factory path/to/file.py:function (or "
                                 "package.module:function)")
        fn, label = resolve_factory(factory)
        model = build(fn, label)
        state = _state_dict(path)
        missing, unexpected = model.state_dict().keys() - state.keys(), state.keys() - model.state_dict().keys()
        if missing or unexpected:
            raise ModelFileError(f"{path}: the state dict does not fit the model of {label!r}: "
                                 f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelFileError(f"{path}: the state dict does not fit the model of {label!r}: "
                                 f"{str(exc).splitlines()[-1].strip()[:300]}") from None
        info["factory"] = factory if isinstance(factory, str) else label
    return model.eval(), info
