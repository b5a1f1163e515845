"""Cards of one model evaluated on disjoint ranges of test images, pooled into one result on all of them.

Every accuracy on a card is a count of samples divided by ``n``: the clean ones, the per-sample worst case of each
norm, the union of the norms (no attack of any norm fooled the sample) and each attack's. On disjoint images those
counts add up, so a run too long for one sitting (or for one machine) can be made in ranges (``dim evaluate --start
S --n N``, or a preset with several ``starts``) and pooled without losing anything a single run would have said; the
95% Wilson intervals narrow with the pooled ``n``. The cards must describe the same model (weights card hash), suite,
seed and dataset, and their image ranges must not overlap; each range is read from the card (the first ``n`` when it
names none; random subsets are refused, since two of them may share images). Where every card counts the samples
per set of norms that broke them (``union.broken_by``), those counts are summed too.

The pooled result is itself a card of the model on all the images (``dim compare`` puts it beside others): the
clean accuracy, per protocol each norm's worst case and the union, and each attack finished on every range, each
with its count (``robust``), ``n`` and 95% interval; per-sample figures that do not add up (median distances) are
left out. ``evaluation.images.ranges`` lists the ranges and ``cards`` the cards pooled.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..evaluation.metrics import most_frequent_first, wilson_interval
from ..fileio import atomic_write_text

ATTACK_META = ("norm", "adaptive", "black_box")    # what an attack's entry says of it, the same on every card
SAME = ("suite", "seed", "dataset")     # evaluation fields every pooled card must share (data_sha256 is of the
                                        # images evaluated, so it differs from range to range)


def image_range(card: dict[str, Any], path: Path) -> range:
    """The test images a card was computed on."""
    ev = card["evaluation"]
    images = ev.get("images") or {}
    if "ranges" in images:
        raise ValueError(f"{path}: already a pooled result; pool the cards it lists instead")
    if "random_subset_seed" in images:
        raise ValueError(f"{path}: a random subset of images cannot be pooled (two subsets may share images)")
    if images.get("split", "test") != "test":
        raise ValueError(f"{path}: images of the {images['split']} split; pooling adds up ranges of the test set")
    start = int(images.get("start", 0))
    return range(start, start + int(ev["n"]))


def count(accuracy: float | None, n: int, where: str) -> int | None:
    """The number of samples behind ``accuracy`` on ``n`` (cards store the ratio)."""
    if accuracy is None:
        return None
    k = round(accuracy * n)
    if abs(k - accuracy * n) > 1e-6 * n:
        raise ValueError(f"{where}: accuracy {accuracy} is not a count out of {n}")
    return k


def pooled(accuracies: list[float | None], ns: list[int], paths: list[Path], what: str) -> dict[str, Any] | None:
    """Accuracy and 95% interval of the summed counts behind one figure of every card (None if any card lacks it)."""
    counts = [count(a, n, f"{p}: {what}") for a, n, p in zip(accuracies, ns, paths)]
    if any(c is None for c in counts):
        return None
    k, n = sum(c for c in counts if c is not None), sum(ns)
    lo, hi = wilson_interval(k, n)
    return {"accuracy": round(k / n, 4), "robust": k, "n": n, "interval_95": [round(lo, 4), round(hi, 4)]}


def _block(blocks: list[dict[str, Any]], ns: list[int], paths: list[Path], what: str) -> dict[str, Any] | None:
    """One figure of every card (a norm's worst case, a union) pooled, with its threshold (which every card must
    share) and the names of the attacks behind it."""
    out = pooled([b.get("accuracy") for b in blocks], ns, paths, what)
    if out is None:
        return None
    for b, p in zip(blocks[1:], paths[1:]):
        if b.get("threshold") != blocks[0].get("threshold"):
            raise ValueError(f"{p}: {what} at threshold {b.get('threshold')}, not {blocks[0].get('threshold')} "
                             f"as in {paths[0]}")
    if blocks[0].get("threshold") is not None:
        out["threshold"] = blocks[0]["threshold"]
    if any("attacks" in b for b in blocks):
        out["attacks"] = sorted(set().union(*(b.get("attacks", []) for b in blocks)))
    return out


def protocol(cards: list[dict[str, Any]], key: str, ns: list[int], paths: list[Path],
             attacks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-norm worst cases, the union and the minimal accuracy (the lowest of one attack pooled over every range,
    among ``attacks``, those of the protocol) of one protocol (``incl_adaptive`` or ``paper_protocol``)."""
    norms = sorted(set.intersection(*(set(c[key]["per_norm"]) for c in cards)))
    out: dict[str, Any] = {"per_norm": {}}
    for norm in norms:
        out["per_norm"][norm] = _block([c[key]["per_norm"][norm] for c in cards], ns, paths, f"{key} {norm}")
    unions = [c[key].get("union") for c in cards]
    if all(u and u.get("accuracy") is not None for u in unions):
        for u, p in zip(unions[1:], paths[1:]):
            if u["norms"] != unions[0]["norms"]:
                raise ValueError(f"{p}: {key} union over {u['norms']}, not {unions[0]['norms']} as in {paths[0]}")
        out["union"] = _block(unions, ns, paths, f"{key} union")
        out["union"]["norms"] = unions[0]["norms"]
        if all("broken_by" in u for u in unions):     # cards written before it was measured lack it
            out["union"]["broken_by"] = broken_by([u["broken_by"] for u in unions], ns, paths, key)
    if attacks:
        name = min(attacks, key=lambda a: (attacks[a]["accuracy"], a))
        out.update(minimal_accuracy=attacks[name]["accuracy"], minimal_attack=name,
                   minimal_interval_95=attacks[name]["interval_95"])
    return out


def broken_by(per_card: list[dict[str, int]], ns: list[int], paths: list[Path], key: str) -> dict[str, int]:
    """Samples per set of norms that broke them (a card's ``union.broken_by``), summed over the cards."""
    total: dict[str, int] = {}
    for counts, n, p in zip(per_card, ns, paths):
        if sum(counts.values()) != n:
            raise ValueError(f"{p}: {key} union broken_by counts {sum(counts.values())} samples, not {n}")
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    return most_frequent_first(total)


def pool_cards(paths: Sequence[Path | str]) -> dict[str, Any]:
    """The pooled result of the cards at ``paths`` (one model on disjoint image ranges); a ValueError names the
    card that does not fit (another model, suite, seed or dataset, an overlapping range, a missing field)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no cards to pool")
    cards = []
    for p in paths:
        try:
            cards.append(json.loads(p.read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: not a JSON card ({exc})") from None
    try:
        return _pool(cards, paths)
    except KeyError as e:
        raise ValueError(f"a card lacks the field {e} (is it a card written by `dim report`?)") from None


def _pool(cards: list[dict[str, Any]], paths: list[Path]) -> dict[str, Any]:
    first = cards[0]
    for c, p in zip(cards[1:], paths[1:]):
        if c["card_sha256"] != first["card_sha256"]:
            raise ValueError(f"{p}: another model (weights card {c['card_sha256'][:12]}, "
                             f"not {first['card_sha256'][:12]} as in {paths[0]})")
        for field in SAME:
            if c["evaluation"].get(field) != first["evaluation"].get(field):
                raise ValueError(f"{p}: evaluation {field} {c['evaluation'].get(field)!r} differs from "
                                 f"{first['evaluation'].get(field)!r} in {paths[0]}")
    ranges = [image_range(c, p) for c, p in zip(cards, paths)]
    order = sorted(range(len(cards)), key=lambda i: ranges[i].start)
    for a, b in zip(order, order[1:]):
        if ranges[b].start < ranges[a].stop:
            raise ValueError(f"{paths[b]}: images {ranges[b].start}..{ranges[b].stop - 1} overlap "
                             f"{ranges[a].start}..{ranges[a].stop - 1} of {paths[a]}")
    ns = [len(r) for r in ranges]
    names = sorted(set.intersection(*(set(c["attacks"]) for c in cards)))
    attacks, not_applicable = {}, {}
    for a in names:     # an attack unfinished on any range is left out: the pooled card shows its norm incomplete
        entries = [c["attacks"][a] for c in cards]
        meta = {k: first["attacks"][a][k] for k in ATTACK_META if k in first["attacks"][a]}
        if all(e.get("not_applicable") for e in entries):     # kept as the cards keep it: the norm is complete
            not_applicable[a] = {"accuracy": "nan", "interval_95": None, **meta, "not_applicable": True,
                                 "complete": True}
        elif all(e.get("complete") and not e.get("not_applicable") for e in entries):
            attacks[a] = {**pooled([e["accuracy"] for e in entries], ns, paths, a), **meta, "complete": True}
    clean = pooled([c["clean_accuracy"] for c in cards], ns, paths, "clean")
    assert clean is not None
    return {
        "model": first["model"], "name": first.get("name", first["model"]),
        "paper_name": first.get("paper_name", first["model"]), "card_sha256": first["card_sha256"],
        "evaluation": {**{f: first["evaluation"].get(f) for f in SAME}, "n": sum(ns),
                       "images": {"ranges": [[r.start, r.stop - 1] for r in sorted(ranges, key=lambda r: r.start)]}},
        "cards": [{"path": str(p), "images": [r.start, r.stop - 1], "n": len(r),
                   "data_sha256": c["evaluation"].get("data_sha256")} for c, p, r in zip(cards, paths, ranges)],
        "n": sum(ns),
        "interval": first.get("interval", "95% Wilson score interval of each accuracy on its n samples"),
        "clean": clean, "clean_accuracy": clean["accuracy"], "clean_interval_95": clean["interval_95"],
        "incl_adaptive": protocol(cards, "incl_adaptive", ns, paths, attacks),
        "paper_protocol": protocol(cards, "paper_protocol", ns, paths,
                                   {a: v for a, v in attacks.items() if not v.get("adaptive")}),
        "attacks": {**attacks, **not_applicable},
    }


def pool_runs(runs: Sequence[Path], out_dir: Path) -> list[Path]:
    """Pool each model's card over the reports of ``runs`` (one run per image range, as a preset with several
    ``starts`` makes them) into ``out_dir/<model>.json``; returns the files written. A model without a card in
    every run is refused by name."""
    runs = [Path(r) for r in runs]
    names = sorted(p.name for p in (runs[0] / "report" / "cards").glob("*.json"))
    written = []
    for name in names:
        paths = [r / "report" / "cards" / name for r in runs]
        lacking = [str(p) for p in paths if not p.is_file()]
        if lacking:
            raise ValueError(f"cannot pool {name}: no card at {', '.join(lacking)}")
        target = Path(out_dir) / name
        atomic_write_text(target, json.dumps(pool_cards(paths), indent=2) + "\n")
        written.append(target)
    return written
