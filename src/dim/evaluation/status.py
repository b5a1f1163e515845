"""Where a run stands: which (model, attack) units are done, skipped, failed or still to do.

A long evaluation runs over several sittings; this answers "what is left, what did it
cost so far, and roughly how much more will it cost" from the store alone, without
rendering the report.
"""
from __future__ import annotations

import fnmatch
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store import Store

STATES = ("done", "skipped", "failed", "pending")


@dataclass(frozen=True)
class Estimate:
    """Seconds of attacks still to spend on one model (failed shards included: the next run retries them).

    ``seconds`` covers the ``estimated`` shards, of which ``not_applicable`` are of a kind already skipped on
    this model (no cost); ``unknown`` shards have nothing to go by yet (an attack no model of the run has
    finished, on a model that shares no finished attack with the others).
    """
    seconds: float
    estimated: int
    unknown: int
    not_applicable: int = 0


@dataclass(frozen=True)
class ModelStatus:
    model: str
    shards: dict[str, int]          # state -> number of shards
    seconds: float                  # sum over finished shards
    pending_attacks: tuple[str, ...]
    failed_attacks: tuple[str, ...]
    reused: dict[str, int] = field(default_factory=dict)   # donor run -> finished shards copied from it
    left: Estimate = Estimate(0.0, 0, 0)
    # pending attacks outside the last call's --only: another process's part of a split run, not in ``left``
    elsewhere_attacks: tuple[str, ...] = ()
    elsewhere_shards: int = 0
    only: tuple[str, ...] = ()      # the last call's --only patterns (empty: the whole suite)

    @property
    def total(self) -> int:
        return sum(self.shards.values())


def run_status(run_dir: Path | str) -> list[ModelStatus]:
    """One :class:`ModelStatus` per model of the run, in the order the models were added. Where the last
    ``dim evaluate`` call on the run gave ``--only``, the attacks it did not select are counted apart
    (``elsewhere_*``): another process's part of a split run, joined later with ``--reuse``."""
    store = Store.of_run(run_dir, read_only=True)
    try:
        config = store.get_meta("config") or {}
        only = tuple(store.get_meta("only") or ())
        n, batch_size = int(config.get("n", 0)), int(config.get("batch_size", 1))
        n_shards = -(-n // batch_size)
        specs = {a["attack"]: a["spec"] for a in store.attacks()}
        attacks = list(specs)
        shards = store.shards()
        recorded = {(s["model"], s["attack"], s["shard"]): s["status"] for s in shards}
        rates = _rates(shards, n, batch_size)
        seconds = store.attack_seconds()
        reused = store.reused_shards()
        out = []
        for m in store.models():
            counts = dict.fromkeys(STATES, 0)
            pending, failed, elsewhere, elsewhere_shards = [], [], [], 0
            for attack in attacks:
                states = [recorded.get((m["model"], attack, k), "pending") for k in range(n_shards)]
                for st in states:
                    counts[st] += 1
                if not selected(attack, only):
                    if "pending" in states or "failed" in states:
                        elsewhere.append(attack)
                        elsewhere_shards += sum(st in ("pending", "failed") for st in states)
                    continue
                if "pending" in states:
                    pending.append(attack)
                if "failed" in states:
                    failed.append(attack)
            spent = sum(v or 0.0 for (model, _), v in seconds.items() if model == m["model"])
            donors: dict[str, int] = {}
            for (model, _, _), donor in reused.items():
                if model == m["model"]:
                    donors[donor] = donors.get(donor, 0) + 1
            left = _estimate(m["model"], [(a, k) for a in attacks for k in range(n_shards) if selected(a, only)
                                          and recorded.get((m["model"], a, k), "pending") in ("pending", "failed")],
                             rates, recorded, specs, n, batch_size)
            out.append(ModelStatus(m["model"], counts, spent, tuple(pending), tuple(failed), donors, left,
                                   tuple(elsewhere), elsewhere_shards, only))
        return out
    finally:
        store.close()


def selected(attack: str, only: tuple[str, ...]) -> bool:
    """Whether ``attack`` is among what a call with ``--only`` patterns ``only`` runs (every attack without any)."""
    return not only or any(fnmatch.fnmatchcase(attack, p) for p in only)


def _shard_images(shard: int, n: int, batch_size: int) -> int:
    return max(0, min(batch_size, n - shard * batch_size))


def _rates(shards: list[dict[str, Any]], n: int, batch_size: int) -> dict[tuple[str, str], float]:
    """(model, attack) -> seconds per image over its finished shards (shards differ in size: the last is short)."""
    seconds: dict[tuple[str, str], float] = {}
    images: dict[tuple[str, str], int] = {}
    for sh in shards:
        if sh["status"] == "done" and sh["seconds"] is not None:
            key = (sh["model"], sh["attack"])
            seconds[key] = seconds.get(key, 0.0) + sh["seconds"]
            images[key] = images.get(key, 0) + _shard_images(sh["shard"], n, batch_size)
    return {key: seconds[key] / images[key] for key in seconds if images[key] > 0}


def _kind(spec: dict[str, Any]) -> tuple[Any, Any]:
    """What decides whether an attack applies to a model: its runner and its gradient (BPDA needs a binarization)."""
    return spec.get("attack"), (spec.get("params") or {}).get("gradient")


def _rate(model: str, attack: str, rates: dict[tuple[str, str], float]) -> float | None:
    """Seconds per image of ``attack`` on ``model``: measured if any shard finished, else the same attack on the
    other models scaled by how much slower ``model`` was than each of them on the attacks both finished (median
    ratio: ABS costs about ten times DIM on every attack), the median over those models; None with nothing to go by."""
    if (model, attack) in rates:
        return rates[(model, attack)]
    guesses = []
    for (other, a), rate in rates.items():
        if a != attack or other == model:
            continue
        ratios = [rates[(model, c)] / r for (o, c), r in rates.items()
                  if o == other and r > 0 and (model, c) in rates]
        if ratios:
            guesses.append(rate * statistics.median(ratios))
    return statistics.median(guesses) if guesses else None


def _estimate(model: str, left: list[tuple[str, int]], rates: dict[tuple[str, str], float],
              recorded: dict[tuple[str, str, int], str], specs: dict[str, dict[str, Any]], n: int,
              batch_size: int) -> Estimate:
    """Seconds for the shards ``left`` of ``model``: none for an attack of a kind already skipped on this model
    (BPDA on a model without binarization skips in no time), else its rate times the shard's images."""
    skipped = {_kind(specs[a]) for (m, a, _), st in recorded.items() if m == model and st == "skipped" and a in specs}
    seconds, estimated, unknown, not_applicable = 0.0, 0, 0, 0
    for attack, shard in left:
        if _kind(specs[attack]) in skipped:
            estimated += 1
            not_applicable += 1
            continue
        rate = _rate(model, attack, rates)
        if rate is None:
            unknown += 1
        else:
            seconds += rate * _shard_images(shard, n, batch_size)
            estimated += 1
    return Estimate(seconds, estimated, unknown, not_applicable)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def runs_below(folder: Path | str) -> list[Path]:
    """The runs one or two levels below ``folder`` (a preset's image ranges, ``RUN/images-<start>``; every preset of
    ``dim reproduce --preset all``, ``RUN/<preset>[/images-<start>]``), in name order; empty for a run itself."""
    folder = Path(folder)
    if (folder / "results.sqlite").is_file():
        return []
    found = {p.parent for pattern in ("*/results.sqlite", "*/*/results.sqlite") for p in folder.glob(pattern)}
    return sorted(found)


def status_text(run_dir: Path | str) -> str:
    """A few lines per model: shard counts by state, seconds so far, what is left or failed. A folder of runs
    (:func:`runs_below`) gets each run's lines under its name."""
    below = runs_below(run_dir)
    if below:
        return "\n\n".join(f"{sub}:\n" + "\n".join(f"  {line}" for line in status_text(sub).splitlines())
                           for sub in below)
    rows = run_status(run_dir)
    if not rows:
        return f"{run_dir}: no model evaluated yet"
    lines = []
    for r in rows:
        counts = ", ".join(f"{r.shards[s]} {s}" for s in STATES if r.shards[s])
        lines.append(f"{r.model}: {r.shards['done'] + r.shards['skipped']}/{r.total} shards finished "
                     f"({counts}); {r.seconds:,.0f} s of attacks so far")
        for donor, k in r.reused.items():
            lines.append(f"  {k} of the finished shards copied from {donor} (re-verified)")
        if r.pending_attacks:
            lines.append(f"  to do ({len(r.pending_attacks)}): " + ", ".join(r.pending_attacks))
        if r.left.estimated or r.left.unknown:
            notes = [f"{r.left.not_applicable} of them not applicable, like others of their kind"] \
                if r.left.not_applicable else []
            if r.left.unknown:
                notes.append(f"{r.left.unknown} more with nothing finished to go by")
            if r.left.estimated:
                lines.append(f"  left: about {_duration(r.left.seconds)} of attacks for {r.left.estimated} shard(s) at "
                             f"the pace of the finished ones" + (f" ({'; '.join(notes)})" if notes else ""))
            else:
                lines.append(f"  left: {r.left.unknown} shard(s), nothing finished yet to estimate them by")
        if r.failed_attacks:
            lines.append(f"  failed ({len(r.failed_attacks)}, see the report): " + ", ".join(r.failed_attacks))
        if r.elsewhere_attacks:
            patterns = " ".join(f"--only {p!r}" for p in r.only)
            lines.append(f"  not selected by the last call ({patterns}): {r.elsewhere_shards} shard(s) of "
                         f"{len(r.elsewhere_attacks)} attack(s), left to another call or process (join its run "
                         "with --reuse, or run without --only)")
    return "\n".join(lines)
