"""The evaluation runner: (model, attack, shard) units, stored as they finish, resumable.

A run directory holds ``results.sqlite`` (see :mod:`dim.store`), the resolved
config and provenance, and ``adversarials/<model>/<attack>.npz``. Running the
same evaluation again skips every finished shard; each shard's random seed is a
function of (seed, model, attack, shard), so a resumed run stores exactly what an
uninterrupted one would.
"""
from __future__ import annotations

import fnmatch
import hashlib
import re
import shutil
import time
import traceback
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..attacks import NotApplicable
from ..attacks.suites import AttackSpec, get_suite
from ..core.device import DeviceLike, describe, device_info, resolve_device
from ..fileio import atomic_write
from ..progress import log, progress_bar
from ..provenance import git_commit, package_versions
from ..store import ResultRow, Store
from ..names import file_name
from .locks import unit_lock
from .norms import ThreatModel
from .outputs import check_outputs
from .reuse import Donor, copy_shard, data_sha256, open_donor, reusable
from .verify import Verified, predict_numpy, verify

ADV_DIR = "adversarials"


@dataclass
class EvalModel:
    """A model under evaluation. ``key`` names it in the store (unique per run)."""
    key: str
    model: nn.Module
    name: str = "custom"
    paper_name: str = ""
    card: dict[str, Any] = field(default_factory=dict)
    card_sha256: str | None = None


def attack_runner(spec: AttackSpec) -> Callable[..., Verified]:
    """The function that runs ``spec``: foolbox unless an adapter of ours is registered."""
    from ..attacks import ADAPTERS
    from ..attacks.foolbox_adapter import run_foolbox
    return ADAPTERS.get(spec.attack, run_foolbox)


def slug(text: str) -> str:
    """A model or attack name as the file name of its adversarials: no separator survives (``L2 DDN`` ->
    ``L2_DDN``, as in runs stored so far); a name that would be empty, ``.`` or ``..`` gets
    :func:`dim.names.file_name`."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")
    return s if s not in ("", ".", "..") else file_name(text)


def shard_seed(seed: int, model: str, attack: str, shard: int) -> int:
    return zlib.crc32(f"{seed}/{model}/{attack}/{shard}".encode())


def _atomic_npz(path: Path, **arrays: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))


def adversarial_path(run_dir: Path, model: str, attack: str) -> Path:
    return Path(run_dir) / ADV_DIR / slug(model) / f"{slug(attack)}.npz"


def _shard_path(run_dir: Path, model: str, attack: str, shard: int) -> Path:
    return Path(run_dir) / ADV_DIR / slug(model) / slug(attack) / f"shard_{shard:05d}.npz"


def load_adversarials(run_dir: Path, model: str, attack: str) -> dict[str, np.ndarray] | None:
    """The stored adversarials of (model, attack): merged file, else whatever shards exist."""
    merged = adversarial_path(run_dir, model, attack)
    if merged.is_file():
        with np.load(merged) as z:
            return {k: z[k] for k in z.files}
    parts = sorted(_shard_path(run_dir, model, attack, 0).parent.glob("shard_*.npz"))
    if not parts:
        return None
    loaded = [dict(np.load(p)) for p in parts]
    return {k: np.concatenate([p[k] for p in loaded]) for k in loaded[0]}


def _merge_shards(run_dir: Path, model: str, attack: str) -> None:
    data = load_adversarials(run_dir, model, attack)
    if data is None:
        return
    order = np.argsort(data["sample"])
    _atomic_npz(adversarial_path(run_dir, model, attack), **{k: v[order] for k, v in data.items()})
    shutil.rmtree(_shard_path(run_dir, model, attack, 0).parent, ignore_errors=True)


def _best_so_far(run_dir: Path, model: str, suite: Sequence[AttackSpec], spec: AttackSpec,
                 samples: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Best verified adversarial per sample among earlier attacks of the same norm (NaN if none)."""
    best = np.full((len(samples), *shape), np.nan, np.float32)
    best_d = np.full(len(samples), np.inf)
    pos = {s: i for i, s in enumerate(samples)}
    for other in suite:
        if other.name == spec.name:
            break
        if other.norm is not spec.norm:
            continue
        data = load_adversarials(run_dir, model, other.name)
        if data is None:
            continue
        for s, d, xa in zip(data["sample"], data["distance"], data["x_adv"]):
            i = pos.get(int(s))
            if i is not None and np.isfinite(d) and d > 0 and d < best_d[i]:
                best_d[i], best[i] = d, xa
    return best


class RunConfigError(ValueError):
    """The run directory holds a different evaluation."""


def select_attacks(specs: Sequence[AttackSpec], only: Sequence[str] | None) -> tuple[AttackSpec, ...]:
    """The attacks of ``specs`` whose name matches one of the shell-style patterns ``only`` (all if none)."""
    if not only:
        return tuple(specs)
    unmatched = [p for p in only if not any(fnmatch.fnmatchcase(s.name, p) for s in specs)]
    if unmatched:
        raise ValueError(f"--only {unmatched}: no attack of the suite matches (attack names look like "
                         f"{specs[0].name!r}; patterns use * and ?)")
    return tuple(s for s in specs if any(fnmatch.fnmatchcase(s.name, p) for p in only))


def evaluate_models(models: Sequence[EvalModel], x: np.ndarray, y: np.ndarray, *, suite: str | Sequence[AttackSpec],
                    run_dir: Path, batch_size: int = 100, seed: int = 0, show: bool | None = None,
                    suite_name: str | None = None, extra_config: dict[str, Any] | None = None,
                    checks: bool = True, only: Sequence[str] | None = None,
                    reuse: Sequence[Path | str] = (), device: DeviceLike = None,
                    threat: ThreatModel | None = None, num_classes: int | None = None) -> Path:
    """Evaluate every model against every attack of ``suite`` on ``x``/``y``; returns the store path.

    With ``checks`` (the default) the model sanity checks of :mod:`dim.evaluation.checks`
    run once per model and are stored in the run, for the report.

    ``only`` (shell-style patterns on attack names, e.g. ``"Linf *"``) restricts the
    work of this call to the matching attacks while the run still records the whole
    suite: two processes can share one model's attacks without doing a shard twice.

    ``reuse`` names earlier runs whose identical finished shards are copied (and
    re-verified) instead of recomputed; see :mod:`dim.evaluation.reuse`.

    ``device`` (``auto``, ``cpu``, ``cuda[:N]``; default ``$DIM_DEVICE``, else ``auto``)
    runs every model, attack, check and verification; the models are moved there.
    Each shard records the device that computed it, and the run's provenance every
    device it ran on.

    Each model's output is checked on a batch first (:mod:`dim.evaluation.outputs`): one finite
    logit per class (``num_classes``, when known) for every image, else a clear error.

    ``threat`` gives the thresholds every attack runs and is counted at (default: the
    paper's for 1 x 28 x 28 images, else the paper's scaled to the image size); a
    threat model other than the paper's is recorded in the run's config.
    """
    dev = resolve_device(device)
    specs = tuple(get_suite(suite) if isinstance(suite, str) else suite)
    todo = select_attacks(specs, only)
    suite_name = suite if isinstance(suite, str) else (suite_name or "custom")
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"expected x of shape (N, C, H, W) and y of shape (N,), got {x.shape} and {y.shape}")
    if x.min() < 0 or x.max() > 1:
        raise ValueError("inputs must lie in [0, 1]")
    keys = [m.key for m in models]
    if len(set(keys)) != len(keys):
        raise ValueError(f"model keys must be unique, got {keys}")
    run_dir = Path(run_dir)
    threat = threat or ThreatModel.for_shape(x.shape[1:])
    config = {"suite": suite_name, "attacks": [_spec_dict(s) for s in specs], "n": len(y),
              "batch_size": batch_size, "seed": seed, "data_sha256": data_sha256(x, y), **(extra_config or {})}
    if not threat.is_paper:   # recorded only when it differs, so that runs stored before it existed resume
        config["threat_model"] = threat.as_dict()
    donors: list[Donor] = []
    try:
        for other in reuse:   # refused before this run is touched
            if Path(other).resolve() == run_dir.resolve():
                raise ValueError(f"--reuse {other}: that is this run itself")
            donors.append(open_donor(other, config, x, y))
    except Exception:
        for d in donors:
            d.close()
        raise
    store = Store(run_dir / "results.sqlite")
    try:
        identities = {m.key: model_identity(m) for m in models}
        check_identities(store, models, identities, run_dir)   # before anything of this call is written
        notes = {}
        for m in models:   # one finite logit per class, checked on a batch before any attack
            m.model.to(dev)
            notes[m.key] = check_outputs(m.key, m.model, x[:64], num_classes, y)
        config = merge_config(store.get_meta("config"), config, run_dir)
        store.set_meta("config", config)
        prov = store.get_meta("provenance") or {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        info = device_info(dev)
        prov.update({"git_commit": git_commit(), "packages": package_versions(), "device": info})
        prov["devices"] = [d for d in prov.get("devices", []) if d != info] + [info]
        store.set_meta("provenance", prov)
        label = describe(info)
        store.add_attacks([(s.name, s.norm.value, _spec_dict(s)) for s in specs])
        n_shards = (len(y) + batch_size - 1) // batch_size
        with progress_bar(show) as bar:
            for m in models:
                store.set_meta(f"outputs/{m.key}", notes[m.key])
                if checks and store.get_meta(f"checks/{m.key}") is None:
                    from .checks import run_model_checks
                    task = bar.add_task(f"{m.key}: sanity checks", total=1, info="")
                    store.set_meta(f"checks/{m.key}", run_model_checks(m.model, x, y, seed))
                    bar.remove_task(task)
                _evaluate_one(store, run_dir, m, specs, todo, x, y, batch_size, n_shards, seed, bar, donors, label,
                              threat, identities[m.key])
    finally:
        store.close()
        for d in donors:
            d.close()
    return run_dir / "results.sqlite"


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


def _spec_dict(spec: AttackSpec) -> dict[str, Any]:
    from ..attacks.suites import OPTIONAL_FIELDS
    d = asdict(spec)
    for name in OPTIONAL_FIELDS:
        if d[name] == AttackSpec.__dataclass_fields__[name].default:
            del d[name]
    d["norm"] = spec.norm.value
    d["params"] = dict(spec.params)
    return d


def _evaluate_one(store: Store, run_dir: Path, m: EvalModel, specs, todo, x, y, batch_size, n_shards, seed,
                  bar, donors: Sequence[Donor] = (), device: str | None = None,
                  threat: ThreatModel | None = None, identity: str | None = None) -> None:
    clean_pred = predict_numpy(m.model, x)
    store.add_model(m.key, m.name, m.paper_name or m.name, m.card, m.card_sha256, y, clean_pred, identity)
    model_task = bar.add_task(f"{m.key}", total=len(todo) * n_shards, info="")
    for spec in todo:
        run = attack_runner(spec)
        attack_task = bar.add_task(f"  {spec.name}", total=n_shards, info="")
        for shard in range(n_shards):
            info = _advance_shard(store, run_dir, m, specs, spec, run, x, y, clean_pred, batch_size, shard, seed,
                                  donors, device, threat)
            bar.update(attack_task, advance=1)
            bar.update(model_task, advance=1, **({"info": info} if info else {}))
        if all(store.shard_status(m.key, spec.name, s) == "done" for s in range(n_shards)):
            _merge_shards(run_dir, m.key, spec.name)
        bar.remove_task(attack_task)


def _advance_shard(store, run_dir, m: EvalModel, specs, spec: AttackSpec, run, x, y, clean_pred, batch_size: int,
                   shard: int, seed: int, donors: Sequence[Donor], device: str | None,
                   threat: ThreatModel | None) -> str | None:
    """Bring one shard to an end if nobody has: reuse a donor's, else compute it (under its unit lock).
    Returns what the progress bar should say, or None when there was nothing to do here."""
    def finished(shard: int) -> bool:   # a failed shard is not: it is retried
        return store.shard_status(m.key, spec.name, shard) in ("done", "skipped")

    if finished(shard):
        return None
    lo, hi = shard * batch_size, min(len(y), (shard + 1) * batch_size)
    with unit_lock(run_dir, m.key, spec.name, shard) as mine:
        if not mine:      # another process is computing this shard: leave it to that one
            log(f"{m.key} / {spec.name} / shard {shard}: being computed by another process; skipped here")
            return None
        if finished(shard):   # by another process, meanwhile
            return None
        if _reuse_shard(store, donors, m, spec, shard, x[lo:hi], y[lo:hi], clean_pred[lo:hi], lo, hi, run_dir):
            return f"{spec.name} (reused)"
        _run_shard(store, run_dir, m, specs, spec, run, x[lo:hi], y[lo:hi], clean_pred[lo:hi], np.arange(lo, hi),
                   shard, seed, device, threat)
    return spec.name


def _reuse_shard(store: Store, donors: Sequence[Donor], m: EvalModel, spec: AttackSpec, shard: int, xs, ys, clean,
                 lo: int, hi: int, run_dir: Path) -> bool:
    """Copy this shard from the first donor run that holds it and whose adversarials verify again."""
    spec_dict = _spec_dict(spec)
    for donor in donors:
        if not reusable(donor, m.key, m.card_sha256, spec_dict, spec, shard, hi):
            continue
        got = copy_shard(donor, m.key, spec, m.model, xs, ys, clean, np.arange(lo, hi))
        if got is None:
            log(f"{m.key} / {spec.name} / shard {shard}: the copy from {donor.run_dir} does not verify; recomputing")
            continue
        arrays, rows, seconds = got
        store.mark_reused(m.key, spec.name, shard, str(donor.run_dir))
        _atomic_npz(_shard_path(run_dir, m.key, spec.name, shard), **arrays)
        store.finish_shard(m.key, spec.name, shard, rows, seconds,
                           device=donor.store.shard_device(m.key, spec.name, shard))
        return True
    return False


def _candidates(claimed: Verified, shape: tuple[int, ...]) -> np.ndarray:
    """The adversarial candidates an adapter returned, as an array of ``shape`` (NaN rows: none)."""
    if not isinstance(claimed, Verified):
        raise TypeError(f"an attack adapter must return a Verified, got {type(claimed).__name__}")
    cand = np.asarray(claimed.x_adv, dtype=np.float32)
    if cand.shape != shape:
        raise ValueError(f"the attack returned candidates of shape {cand.shape}, expected {shape}")
    return cand


def _run_shard(store, run_dir, m: EvalModel, specs, spec: AttackSpec, run, xs, ys, clean, samples, shard,
               seed, device: str | None = None, threat: ThreatModel | None = None) -> None:
    t0 = time.perf_counter()
    correct = np.flatnonzero(clean == ys)
    n = len(ys)
    dist = np.where(clean == ys, np.inf, 0.0)   # misclassified clean sample: distance 0
    pred = clean.copy()
    x_adv = np.full(xs.shape, np.nan, np.float32)
    x_adv[clean != ys] = xs[clean != ys]
    try:
        if len(correct):
            kwargs = {}
            if spec.starting_points:
                kwargs["starting_points"] = _best_so_far(run_dir, m.key, specs, spec, samples[correct], xs.shape[1:])
            claimed = run(spec.bind(threat), m.model, xs[correct], ys[correct],
                          shard_seed(seed, m.key, spec.name, shard), **kwargs)
            # the gate: whatever the adapter did, its candidates are clipped, checked, measured and
            # re-classified here before anything is stored (an adapter's own distances are never kept)
            got = verify(m.model, xs[correct], ys[correct], _candidates(claimed, xs[correct].shape), spec.norm)
            dist[correct], x_adv[correct] = got.distance, got.x_adv
            pred[correct] = np.where(np.isfinite(got.distance), got.pred, clean[correct])
    except NotApplicable as exc:
        store.fail_shard(m.key, spec.name, shard, str(exc), time.perf_counter() - t0, status="skipped",
                         device=device)
        return
    except Exception as exc:  # a failing attack is recorded and does not stop the run
        msg = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=3))
        store.fail_shard(m.key, spec.name, shard, msg, time.perf_counter() - t0, device=device)
        return
    seconds = time.perf_counter() - t0
    _atomic_npz(_shard_path(run_dir, m.key, spec.name, shard), sample=samples, distance=dist, pred=pred,
                x_adv=x_adv)
    rows = [ResultRow(m.key, spec.name, int(s), float(d), int(p), seconds / n)
            for s, d, p in zip(samples, dist, pred)]
    store.finish_shard(m.key, spec.name, shard, rows, seconds, device=device)
