"""What a run is: its config (and how a later call may grow it), the identity of each model in it, its provenance.

These are the rules that decide whether a call continues a run or is another evaluation; the driver
(:mod:`dim.evaluation.runner`) applies them before any unit is planned and knows nothing of them otherwise.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..attacks.spec import AttackSpec, spec_dict
from ..core.device import device_info
from ..core.norms import ThreatModel
from ..provenance import git_commit, package_versions, with_commit
from ..store import Store
from .reuse import data_sha256
from .spec import RunSpec


@dataclass
class EvalModel:
    """A model under evaluation. ``key`` names it in the store (unique per run)."""
    key: str
    model: nn.Module
    name: str = "custom"
    paper_name: str = ""
    card: dict[str, Any] = field(default_factory=dict)
    card_sha256: str | None = None

    def __post_init__(self) -> None:
        # the label of its table column: a model given no name is labelled by its key, so that two unnamed
        # models of one run get two columns
        if not self.paper_name:
            self.paper_name = self.name if self.name != "custom" else self.key


class RunConfigError(ValueError):
    """The run directory holds a different evaluation."""


def run_config(spec: RunSpec, specs: Sequence[AttackSpec], x: np.ndarray, y: np.ndarray,
               threat: ThreatModel) -> dict[str, Any]:
    """The config a call records: suite and attacks, number and hash of the images, batch size, seed, dataset and
    (only where it is not the paper's, so that runs stored before it existed resume) the threat model."""
    config = {"suite": spec.recorded_suite_name, "attacks": [spec_dict(s) for s in specs], "n": len(y),
              "batch_size": spec.batch_size, "seed": spec.seed, "data_sha256": data_sha256(x, y)}
    if spec.dataset is not None:
        config["dataset"] = spec.dataset
    if spec.image_selection() is not None:    # recorded only when it is not the first n, as in every run before
        config["images"] = spec.image_selection()
    if not threat.is_paper:
        config["threat_model"] = threat.as_dict()
    return config


def updated_provenance(prov: dict[str, Any] | None, dev: torch.device, executor: str) -> dict[str, Any]:
    """The run's provenance after a call that computes something on ``dev``: creation time (kept), every commit
    and device it ran with, the packages, and the executors other than serial."""
    prov = prov or {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    info = device_info(dev)
    prov = with_commit(prov, git_commit())
    prov.update({"packages": package_versions(), "device": info})
    prov["devices"] = [d for d in prov.get("devices", []) if d != info] + [info]
    if executor != "serial":
        prov["executors"] = sorted(set(prov.get("executors", [])) | {executor})
    return prov


def model_identity(m: EvalModel) -> str:
    """What is evaluated under ``m.key``: a model directory by the sha256 of its card (which holds the
    weights' sha256 and the config), anything else by the sha256 of its state dict (names, dtypes, shapes,
    values) and, for a factory, its spec."""
    if m.card_sha256:
        return f"card sha256 {m.card_sha256}"
    h = hashlib.sha256()
    for name, t in sorted(m.model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    factory = m.card.get("factory") if m.card else None
    return (f"factory {factory}, " if factory else "") + f"state sha256 {h.hexdigest()}"


def check_identities(store: Store, models: Sequence[EvalModel], identities: dict[str, str], run_dir: Path) -> None:
    """Refuse to evaluate, under a key the run already holds, anything but what it evaluated there."""
    for m in models:
        have = store.model_identity(m.key)
        if have is None:
            continue
        old, old_card = have
        same = old == identities[m.key] if old is not None else old_card == m.card_sha256
        if not same:
            raise RunConfigError(
                f"{run_dir}: model {m.key!r} was evaluated there as {old or f'card sha256 {old_card}'}, and this is "
                f"{identities[m.key]} (another checkpoint or model under the same name); its stored results "
                "would not be this model's. Use a new --run, or another name for it")


def merge_config(old: dict[str, Any] | None, new: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The run's config after this evaluation: the same one, or the same one with more attacks.

    A run may grow by attacks (``--suite adaptive`` on a run that holds ``paper``): every
    finished shard stays valid because shards are keyed by (model, attack, shard) and
    seeded per attack. Anything else that differs (samples, seed, batch size, an attack
    of the same name with other parameters) is another evaluation and is refused.
    """
    if old is None or old == new:
        return new
    fixed = sorted(k for k in set(old) | set(new) if k not in ("suite", "attacks") and old.get(k) != new.get(k))
    old_attacks = {a["name"]: a for a in old.get("attacks", [])}
    changed = sorted(a["name"] for a in new["attacks"] if a["name"] in old_attacks and old_attacks[a["name"]] != a)
    if fixed or changed:
        what = fixed + [f"parameters of {name!r}" for name in changed]
        raise RunConfigError(f"{run_dir}: holds a different evaluation (differs in {what}); "
                             "use a new --run directory or the same options")
    added = [a for a in new["attacks"] if a["name"] not in old_attacks]
    if not added:
        return old
    suites = old["suite"].split("+")
    suites += [p for p in new["suite"].split("+") if p not in suites]
    return {**old, "suite": "+".join(suites), "attacks": old["attacks"] + added}


