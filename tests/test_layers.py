"""The package keeps one dependency order: a module imports only from its own part of the package or below it.

core (device, norms, verification, file and name helpers) -> data, models, store -> attacks -> train, evaluation
-> report -> application (api, pipeline) -> cli. Imports inside functions count too: a deferred import against the
order is still a cycle waiting to happen.
"""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "dim"

LAYERS = [
    {"core", "fileio", "names", "progress", "provenance"},
    {"data", "models", "store", "checkpoint"},
    {"attacks"},
    {"train", "evaluation"},
    {"report"},
    {"api", "pipeline"},
    {"cli", "__main__", "__init__"},
]
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}
# within a layer, these may import each other in this direction only
SAME_LAYER = {("checkpoint", "models"), ("api", "pipeline"), ("pipeline", "api"), ("__main__", "cli")}


def part_of(module: str) -> str:
    """``dim.evaluation.runner`` -> ``evaluation``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[tuple[int, str]]:
    """Every ``dim.*`` module ``path`` imports (relative imports resolved), with its line."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    pkg = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    if rel.name == "__init__":
        pkg = list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            found += [(node.lineno, n) for n in names if n == "dim" or n.startswith("dim.")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("dim.")]
    return found


def violations() -> list[str]:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        me = part_of(".".join(path.relative_to(SRC.parent).with_suffix("").parts))
        if path == SRC / "__init__.py":
            me = "__init__"
        for line, target in imports(path):
            other = part_of(target)
            if other == me or (me, other) in SAME_LAYER:
                continue
            if other == "__init__" or RANK[other] >= RANK[me]:
                bad.append(f"{path.relative_to(SRC.parent)}:{line}: {me} imports {target} ({other})")
    return bad


def test_every_part_is_placed_in_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()}
    parts.discard("__pycache__")
    assert parts <= set(RANK), sorted(parts - set(RANK))


def test_imports_follow_the_layers():
    assert violations() == []


def test_the_checker_sees_a_deferred_upward_import(tmp_path, monkeypatch):
    fake = tmp_path / "dim"
    (fake / "attacks").mkdir(parents=True)
    (fake / "attacks" / "x.py").write_text("def f():\n    from ..evaluation import runner\n")
    monkeypatch.setattr(__import__(__name__), "SRC", fake)
    assert violations() == ["dim/attacks/x.py:2: attacks imports dim.evaluation (evaluation)"]


def test_every_name_a_package_exports_resolves_to_the_object_of_its_module():
    """``dim``, ``dim.core`` and ``dim.attacks`` hand out some names on first use: each exported name must still be
    the object its home module defines (not a submodule of the same name, not missing)."""
    import importlib
    import types

    import dim
    for pkg in ("dim", "dim.core", "dim.attacks", "dim.data", "dim.models"):
        module = importlib.import_module(pkg)
        for name in module.__all__:
            value = getattr(module, name)
            assert value is not None, (pkg, name)
            assert not isinstance(value, types.ModuleType) or name == "data", (pkg, name, value)
    assert dim.load_model is importlib.import_module("dim.checkpoint").load_model
    assert dim.evaluate is importlib.import_module("dim.api").evaluate
    assert importlib.import_module("dim.core").resolve_device is importlib.import_module("dim.core.device").resolve_device
    assert "autoattack" in importlib.import_module("dim.attacks").ADAPTERS
