"""Where a run stands: which (model, attack) units are done, skipped, failed or still to do.

A long evaluation runs over several sittings; this answers "what is left, and what
did it cost so far" from the store alone, without rendering the report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..store import Store

STATES = ("done", "skipped", "failed", "pending")


@dataclass(frozen=True)
class ModelStatus:
    model: str
    shards: dict[str, int]          # state -> number of shards
    seconds: float                  # sum over finished shards
    pending_attacks: tuple[str, ...]
    failed_attacks: tuple[str, ...]
    reused: dict[str, int] = field(default_factory=dict)   # donor run -> finished shards copied from it

    @property
    def total(self) -> int:
        return sum(self.shards.values())


def run_status(run_dir: Path | str) -> list[ModelStatus]:
    """One :class:`ModelStatus` per model of the run, in the order the models were added."""
    store = Store.of_run(run_dir, read_only=True)
    try:
        config = store.get_meta("config") or {}
        n_shards = -(-int(config.get("n", 0)) // int(config.get("batch_size", 1)))
        attacks = [a["attack"] for a in store.attacks()]
        recorded = {(s["model"], s["attack"], s["shard"]): s["status"] for s in store.shards()}
        seconds = store.attack_seconds()
        reused = store.reused_shards()
        out = []
        for m in store.models():
            counts = dict.fromkeys(STATES, 0)
            pending, failed = [], []
            for attack in attacks:
                states = [recorded.get((m["model"], attack, k), "pending") for k in range(n_shards)]
                for st in states:
                    counts[st] += 1
                if "pending" in states:
                    pending.append(attack)
                if "failed" in states:
                    failed.append(attack)
            spent = sum(v or 0.0 for (model, _), v in seconds.items() if model == m["model"])
            donors: dict[str, int] = {}
            for (model, _, _), donor in reused.items():
                if model == m["model"]:
                    donors[donor] = donors.get(donor, 0) + 1
            out.append(ModelStatus(m["model"], counts, spent, tuple(pending), tuple(failed), donors))
        return out
    finally:
        store.close()


def status_text(run_dir: Path | str) -> str:
    """A few lines per model: shard counts by state, seconds so far, what is left or failed."""
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
        if r.failed_attacks:
            lines.append(f"  failed ({len(r.failed_attacks)}, see the report): " + ", ".join(r.failed_attacks))
    return "\n".join(lines)
