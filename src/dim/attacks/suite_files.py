"""Attack suites as TOML files a user writes: every attack with its class or adapter, norm and parameters.

    dim suites quick --export mine.toml        # a file to start from
    dim evaluate models/dim --suite mine.toml --run runs/mine

A file holds an optional ``description`` and one ``[[attack]]`` table per attack, with the fields of
:data:`dim.attacks.spec.FILE_FIELDS` (``name``, ``attack``, ``norm`` required; ``[attack.params]`` for its
parameters). ``attack`` is an adapter key of ours (``dim suites`` lists them with each attack) or a foolbox attack
class. The run records every attack with its parameters, so a report prints a file's suite as it prints a built-in
one, and a run resumed with an edited file is refused where an attack's parameters changed.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Mapping, Sequence

import tomli_w

from .registry import adapters
from .spec import AttackSpec, spec_dict, spec_from_dict

SUFFIX = ".toml"


def is_suite_file(name: str) -> bool:
    """Whether a ``--suite`` value names a file rather than a built-in suite."""
    return str(name).strip().endswith(SUFFIX)


def _known_attack(attack: str) -> bool:
    if attack in adapters():
        return True
    import foolbox
    return isinstance(getattr(foolbox.attacks, attack, None), type)


def read_suite(path: Path | str) -> tuple[AttackSpec, ...]:
    """The attacks of a suite file, checked (fields, types, norms, known attacks, unique names)."""
    path = Path(path).expanduser()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such suite file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: not a readable TOML suite file ({exc})") from None
    unknown = sorted(set(data) - {"description", "attack"})
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {unknown}; a suite file holds 'description' and "
                         "[[attack]] tables")
    tables = data.get("attack")
    if not isinstance(tables, list) or not tables:
        raise ValueError(f"{path}: no [[attack]] table; a suite needs at least one attack")
    specs = tuple(spec_from_dict(t, f"{path}, attack {i + 1}") for i, t in enumerate(tables))
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{path}: attack name(s) {twice} given twice; names key the results and must be unique")
    for i, s in enumerate(specs):
        if not _known_attack(s.attack):
            raise ValueError(f"{path}, attack {i + 1} ({s.name!r}): unknown attack {s.attack!r}; expected one of our "
                             f"adapters {sorted(adapters())} or a foolbox attack class")
    return specs


def _key(k: str) -> str:
    """``k`` as a TOML key (quoted where it must be)."""
    return tomli_w.dumps({k: 0}).split(" = ")[0]


def _table(name: str, d: Mapping[str, Any], header: str) -> str:
    """One table in block style, its sub-tables after it (``header`` is its own header line)."""
    text = header + "\n" + tomli_w.dumps({k: v for k, v in d.items() if not isinstance(v, Mapping)})
    for k, v in d.items():
        if isinstance(v, Mapping):
            sub = f"{name}.{_key(k)}"
            text += _table(sub, v, f"[{sub}]")
    return text


def write_suite(specs: Sequence[AttackSpec], path: Path | str, description: str = "") -> Path:
    """Write ``specs`` as a suite file, one ``[[attack]]`` block per attack (fields at their default left out),
    and return its path."""
    blocks = []
    for s in specs:
        d = spec_dict(s)
        table: dict[str, Any] = {k: d[k] for k in ("name", "attack", "norm")}
        defaults = AttackSpec(s.name, s.attack, s.norm)
        table.update({k: v for k, v in d.items() if k not in ("name", "attack", "norm", "params")
                      and v != getattr(defaults, k)})
        if d["params"]:
            table["params"] = d["params"]
        blocks.append(_table("attack", table, "[[attack]]"))
    path = Path(path)
    head = ("# dim attack suite: one [[attack]] table per attack (name, attack, norm; optional params,\n"
            "# repeats, targeted, starting_points, distance_param, adaptive, refines). Run it with\n"
            f"# dim evaluate ... --suite {path.name}\n")
    if description:
        head += tomli_w.dumps({"description": description})
    path.write_text(head + "\n" + "\n".join(blocks))
    return path
