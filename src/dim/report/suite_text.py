"""How the report and ``dim suites`` print an attack: its parameters and traits in one line."""
from __future__ import annotations

from typing import Any

from ..attacks.spec import is_black_box, is_ensemble


def params_text(spec: dict[str, Any]) -> str:
    """An attack's parameters in one line (from :func:`spec_dict`, as a run's config stores it)."""
    return ", ".join(f"{k}={v}" for k, v in spec["params"].items()) or "foolbox defaults"


def describe_attack(spec: dict[str, Any]) -> str:
    """An attack's parameters and traits in one line: what the report's suite table and ``dim suites`` print."""
    params = params_text(spec)
    flags = [f"x{spec['repeats']}" if spec.get("repeats", 1) > 1 else "", "targeted" if spec.get("targeted") else "",
             "starts from best adversarial so far" if spec.get("starting_points") else "",
             f"distance={spec['norm']}" if spec.get("distance_param") else "",
             "adaptive" if spec.get("adaptive") else "", f"refines {spec['refines']}" if spec.get("refines") else "",
             "black box" if is_black_box(spec["attack"]) else "",
             "white + black box" if is_ensemble(spec["attack"]) else ""]
    return params + "".join(f"; {f}" for f in flags if f)
