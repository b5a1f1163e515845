"""The driver of an evaluation: plan the units, hand them to an executor, commit what comes back.

A run directory holds ``results.sqlite`` (see :mod:`dim.store`), the resolved
config and provenance, and ``adversarials/<model>/<attack>.npz``
(:mod:`dim.evaluation.artifacts`). The work is split in three:

- **plan** (:mod:`dim.evaluation.units`): from the run spec and the store, the
  (model, attack, shard) units still to do, plus each model's sanity checks, with
  their dependencies;
- **execute** (:mod:`dim.evaluation.execute`): unit in, result out, on an executor
  (:mod:`dim.evaluation.executors`: ``serial`` in this process, ``ray`` on a cluster);
- **commit** (:mod:`dim.evaluation.commit`): this process alone writes rows, files and
  reuse marks, one transaction per unit.

What a run *is* (its config and how it may grow, the identity of each model in it, its provenance) is decided
by :mod:`dim.evaluation.record`, not here.

Running the same evaluation again skips every finished shard; each shard's random
seed is a function of (seed, model, attack, shard), so a resumed run, or one whose
units finished in another order, stores exactly what an uninterrupted serial one would.
A run lock (:mod:`dim.evaluation.locks`) keeps a second driver out of the run.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..attacks.spec import AttackSpec, spec_dict
from ..attacks.suites import select
from ..core.device import resolve_device
from ..core.norms import ThreatModel
from ..core.verify import predict_numpy
from ..models.binarize import has_binarization
from ..progress import progress_bar
from ..fileio import check_no_links
from ..store import Store
from .artifacts import INPUTS, atomic_npz, best_so_far, has_shards, load_inputs, merge_shards
from .commit import commit, commit_reused
from .executors import Executor, get_executor
from .inputs import check_inputs
from .locks import run_lock
from .outputs import check_outputs
from .record import (EvalModel, RunConfigError, check_identities, merge_config, model_identity, run_config,
                     updated_provenance)
from .repair import reopen_mismatched
from .reuse import Donor, data_sha256, open_donor, starts_sha256
from .spec import RunSpec
from .units import AttackUnit, Unit, plan

__all__ = ["EvalModel", "RunConfigError", "data_sha256", "evaluate_models", "select_attacks"]


def select_attacks(specs: Sequence[AttackSpec], only: Sequence[str] | None) -> tuple[AttackSpec, ...]:
    """The attacks of ``specs`` whose name matches one of the shell-style patterns ``only`` (all if none)."""
    return select(tuple(specs), tuple(only), "--only") if only else tuple(specs)


def evaluate_models(models: Sequence[EvalModel], x: np.ndarray, y: np.ndarray, spec: RunSpec | None = None, *,
                    threat: ThreatModel | None = None, num_classes: int | None = None, **options: Any) -> Path:
    """Evaluate every model against every attack of the spec's suite on ``x``/``y``; returns the store path.

    ``spec`` is a :class:`~dim.evaluation.spec.RunSpec`; keyword ``options`` build one
    instead (``suite=``, ``run_dir=``, ``batch_size=``, ``seed=``, ``only=``, ``reuse=``,
    ``device=``, ``executor=``, ...). With ``checks`` (the default) the model sanity
    checks of :mod:`dim.evaluation.checks` run once per model and are stored for the report.
    ``only`` restricts the work of this call to the matching attacks while the run still
    records the whole suite. ``reuse`` names earlier runs whose identical finished shards
    are copied (and re-verified) instead of recomputed; see :mod:`dim.evaluation.reuse`.

    ``device`` (``auto``, ``cpu``, ``cuda[:N]``; default ``$DIM_DEVICE``, else ``auto``)
    runs every model, attack, check and verification; the models are moved there. Each
    shard records the device that computed it, and the run's provenance every device it ran on.

    Each model's output is checked on a batch first (:mod:`dim.evaluation.outputs`): one finite
    logit per class (``num_classes``, when known) for every image, else a clear error.

    ``threat`` gives the thresholds every attack runs and is counted at (default: the
    paper's for 1 x 28 x 28 images, else the paper's scaled to the image size, then the
    spec's ``thresholds``); a threat model other than the paper's is recorded in the run's config.
    """
    if spec is not None and options:
        raise TypeError(f"give a RunSpec or options, not both (got {sorted(options)})")
    spec = spec if spec is not None else RunSpec.of(**options)
    dev = resolve_device(spec.device)
    specs = spec.attacks()
    todo = select_attacks(specs, spec.only)
    x, y = check_inputs(x, y, num_classes)   # copies: a model changing its input in place changes neither
    keys = [m.key for m in models]
    if len(set(keys)) != len(keys):
        raise ValueError(f"model keys must be unique, got {keys}")
    run_dir = spec.run_dir
    threat = threat or ThreatModel.for_shape(x.shape[1:], spec.thresholds)
    config = run_config(spec, specs, x, y, threat)
    executor = get_executor(spec.executor, spec, dev)   # a missing Ray is refused before the run is touched
    donors: list[Donor] = []
    try:
        for other in spec.reuse:   # refused before this run is touched
            if Path(other).resolve() == Path(run_dir).resolve():
                raise ValueError(f"--reuse {other}: that is this run itself")
            donors.append(open_donor(other, config, x, y))
        created = not Path(run_dir).exists()
        started = False
        try:
            with run_lock(run_dir):
                store = Store(check_no_links(run_dir / "results.sqlite", run_dir))
                try:
                    units = _prepare(store, run_dir, models, specs, todo, x, y, spec, config, dev, threat,
                                     num_classes)
                    started = True
                    _drive(store, run_dir, models, specs, todo, units, donors, spec, executor, len(y))
                finally:
                    store.close()
        except BaseException:
            if created and not started:   # a start that failed (a model's outputs, say) leaves no run behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
    finally:
        for d in donors:
            d.close()
    return run_dir / "results.sqlite"


def _prepare(store: Store, run_dir: Path, models: Sequence[EvalModel], specs, todo, x, y, spec: RunSpec,
             config: dict[str, Any], dev: torch.device, threat: ThreatModel, num_classes: int | None) -> list[Unit]:
    """Everything the driver records before any unit runs, then the plan."""
    identities = {m.key: model_identity(m) for m in models}
    check_identities(store, models, identities, run_dir)   # before anything of this call is written
    notes = {}
    for m in models:   # one finite logit per class, checked on a batch before any attack
        m.model.to(dev)
        notes[m.key] = check_outputs(m.key, m.model, x[:64], num_classes, y)
    store.set_meta("config", merge_config(store.get_meta("config"), config, run_dir))
    # what this call was asked to run (empty: everything): ``dim status`` tells another process's part from work
    # left undone (a run split by norm over two processes with --only, joined later with --reuse)
    store.set_meta("only", list(spec.only))
    store.add_attacks([(s.name, s.norm.value, spec_dict(s)) for s in specs])
    stored = load_inputs(run_dir)            # the clean images, for the report's gallery: this run's, checked
    if stored is None or data_sha256(*stored) != config["data_sha256"]:
        atomic_npz(run_dir / INPUTS, within=run_dir, x=x, y=y)
    clean = {}
    for m in models:
        clean[m.key] = predict_numpy(m.model, x)
        store.add_model(m.key, m.name, m.paper_name, m.card, m.card_sha256, y, clean[m.key],
                        identities[m.key])
        store.set_meta(f"outputs/{m.key}", notes[m.key])
        # recorded here, where the model is at hand, so that the report never rebuilds a model to know it
        store.set_meta(f"binarized/{m.key}", has_binarization(m.model))
    # finished shards whose adversarials file is missing, damaged or another's are computed again by this call
    reopen_mismatched(store, run_dir, [m.key for m in models], todo, len(y), spec.batch_size)
    units = plan(store, models, specs, todo, x, y, clean, batch_size=spec.batch_size, seed=spec.seed,
                 threat=threat, checks=spec.checks)
    prov = store.get_meta("provenance")
    if units or prov is None:   # a call with nothing left to do computed nothing: the run's provenance stays
        store.set_meta("provenance", updated_provenance(prov, dev, spec.executor))
    return units


def _drive(store: Store, run_dir: Path, models: Sequence[EvalModel], specs, todo, units: list[Unit],
           donors: Sequence[Donor], spec: RunSpec, executor: Executor, n: int) -> None:
    """Copy what donors hold, then keep the executor fed with units whose dependencies are committed,
    committing each result as it comes back."""
    by_key = {m.key: m for m in models}
    n_shards = (n + spec.batch_size - 1) // spec.batch_size

    def complete(model: str, attack: str) -> None:   # one adversarials file once every shard is done
        if has_shards(run_dir, model, attack) and all(
                store.shard_status(model, attack, s) == "done" for s in range(n_shards)):
            merge_shards(run_dir, model, attack)

    waiting: list[Unit] = []
    to_run: set = set()
    for u in units:
        if isinstance(u, AttackUnit) and donors and _copied(store, run_dir, donors, u, by_key[u.model], specs,
                                                            to_run):
            continue
        waiting.append(u)
        to_run.add(u.key)
    _record_donors(store, donors)
    pending = {u.key for u in waiting}
    with progress_bar(spec.show) as bar:
        task = bar.add_task(f"{len(waiting)} units ({spec.executor})", total=len(waiting), info="")
        started = bool(waiting)
        try:
            if started:
                executor.start([by_key[k] for k in dict.fromkeys(u.model for u in waiting)])
            inflight = 0
            while waiting or inflight:
                inflight += _submit_ready(executor, waiting, pending, inflight, run_dir, specs)
                unit, result = executor.next_result()
                inflight -= 1
                commit(store, run_dir, unit, result)
                pending.discard(unit.key)
                if isinstance(unit, AttackUnit):
                    complete(unit.model, unit.spec.name)
                bar.update(task, advance=1, info=f"{inflight} in flight; {unit.label}: {result.status}")
        finally:
            if started:
                executor.close()
    for m in models:
        for s in todo:
            complete(m.key, s.name)


def _record_donors(store: Store, donors: Sequence[Donor]) -> None:
    """Name, in the run's provenance, the commits that computed the shards copied from each donor."""
    used = set(store.reused_shards().values())
    prov = store.get_meta("provenance") or {}
    known = prov.get("donor_commits", {})
    new = {str(d.run_dir): d.commits for d in donors if str(d.run_dir) in used}
    if new and any(known.get(k) != v for k, v in new.items()):
        store.set_meta("provenance", {**prov, "donor_commits": {**known, **new}})


def _copied(store: Store, run_dir: Path, donors: Sequence[Donor], u: AttackUnit, m: EvalModel, specs,
            to_run: set) -> bool:
    """Whether ``u`` was copied from a donor. One that starts from earlier adversarials can be only once
    those of its attacks are committed (copied before it, or done in an earlier call): then its starting
    points are known here and must be the donor's."""
    if u.spec.starting_points and any((u.model, a, u.shard) in to_run for a in u.after):
        return False
    return commit_reused(store, run_dir, donors, u, m.model, m.card_sha256, specs, lambda: starts_sha256(
        best_so_far(run_dir, u.model, specs, u.spec, u.samples, u.x.shape[1:])))


def _submit_ready(executor, waiting: list[Unit], pending: set, inflight: int, run_dir: Path, specs) -> int:
    """Submit waiting units, in plan order, whose dependencies are committed, up to the executor's capacity;
    a unit that starts from earlier adversarials receives them now. Returns how many were submitted."""
    submitted, i = 0, 0
    while inflight + submitted < executor.capacity and i < len(waiting):
        u = waiting[i]
        if isinstance(u, AttackUnit) and any((u.model, a, u.shard) in pending for a in u.after):
            i += 1
            continue
        waiting.pop(i)
        if isinstance(u, AttackUnit) and u.spec.starting_points:
            u = replace(u, starting_points=best_so_far(run_dir, u.model, specs, u.spec, u.samples, u.x.shape[1:]))
        executor.submit(u)
        submitted += 1
    if inflight + submitted == 0:
        raise RuntimeError("no unit can start: a dependency is never committed")   # a bug in the plan
    return submitted
