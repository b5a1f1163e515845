"""``dim report RUN_DIR``: every page, table and card rendered from the store through one view.

:func:`dim.report.view.build_view` reads the run (store, inputs, adversarials) into plain
data; the renderers (:mod:`.markdown`, :mod:`.tables` for Markdown/CSV/LaTeX, :mod:`.cards`
for JSON, :mod:`.figures` for PNG curves, :mod:`.html` for the page) are functions of it.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable

from ..fileio import atomic_write_bytes, atomic_write_text, check_no_links
from ..store import Store
from . import tables
from .cards import metrics_json, write_cards
from .figures import plot_curves
from .gallery import build_gallery
from .html import render_html
from .markdown import checks_markdown, provenance_markdown, suite_markdown, summary_markdown, timing_markdown
from .paper import TABLES
from .view import ReportView, build_view, indistinguishable, layouts, quoted

__all__ = ["ReportError", "build_report", "indistinguishable", "quoted", "run_warnings", "write_cards"]


class ReportError(ValueError):
    """A report that cannot be written where asked; the message names the folder and the cause."""


def build_report(run_dir: Path | str, plots: bool = True, cards_dir: Path | str | None = None,
                 out_dir: Path | str | None = None, warn: Callable[[str], None] | None = None,
                 suite: str | None = None) -> Path:
    """Write the report (default ``RUN_DIR/report/``, else ``out_dir``): summary, checks, suite, Table 1/2
    (md, csv, tex), curves, metrics JSON, and one JSON card per model (``cards/``, and ``cards_dir`` if given).

    The store is only read, so a run on read-only media is reported with ``out_dir`` elsewhere. A report that
    would hold fewer models, attacks or images than the one it replaces keeps the old one beside it
    (``*.previous.*``) and says so through ``warn`` (default: a Python warning). ``suite``: report only that
    suite's attacks, as the run's protocol (see :func:`.view.build_view`)."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    if out_dir is None:
        check_no_links(out, run_dir)     # RUN/report itself a link would send the report (and its deletions) away
    store = Store.of_run(run_dir, read_only=True)
    try:
        view = build_view(store, run_dir, suite)
        try:
            _write_report(view, out, plots, cards_dir, warn or _python_warning)
        except OSError as exc:
            where = exc.filename or out
            raise ReportError(f"{where}: cannot write the report ({exc.strerror or exc}); "
                              f"give 'dim report {run_dir} --out FOLDER' a folder you can write") from None
    finally:
        store.close()
    return out


def view_warnings(view: ReportView) -> list[str]:
    """What a user must know before quoting a run's numbers, one plain line each: failed attacks, a model that
    returns probabilities, failed sanity checks (the report says more about each)."""
    from ..evaluation import checks
    out = []
    for r in view.results:
        failed = {a.attack: a.failed_shards for a in r.attacks.values() if a.failed_shards}
        if failed:
            out.append(f"{r.model}: {sum(failed.values())} shard(s) of {', '.join(sorted(failed))} failed: their "
                       "attacks count for nothing in its numbers; rerun the same evaluation to retry them")
        if (view.outputs.get(r.model) or {}).get("probabilities"):
            out.append(f"{r.model} returns probabilities, not logits: gradient attacks lose their gradient on "
                       "saturated probabilities and may overstate its robustness; evaluate its logits")
        for name, o in view.outcomes.get(r.model, {}).items():
            if o.status == checks.WARN:
                out.append(f"{r.model}: sanity check failed: {checks.CHECKS[name].title}: {o.value}")
    return out


def run_warnings(run_dir: Path | str) -> list[str]:
    """:func:`view_warnings` of a run, read from its store."""
    store = Store.of_run(Path(run_dir), read_only=True)
    try:
        return view_warnings(build_view(store, Path(run_dir)))
    finally:
        store.close()


def _python_warning(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def _content(entries: list[dict]) -> tuple[int, int, int]:
    """What a metrics.json holds: models, (model, attack) results, and the most images per model."""
    return (len(entries), sum(len(e.get("attacks", {})) for e in entries), max((e.get("n", 0) for e in entries),
                                                                               default=0))


def _keep_a_fuller_report(out: Path, new: list[dict], warn: Callable[[str], None]) -> None:
    """Before a report replaces one that held more, keep the old one as ``*.previous.*`` and say so."""
    try:
        old = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError):
        return
    if not isinstance(old, list):
        return
    before, after = _content(old), _content(new)
    if all(a >= b for a, b in zip(after, before)):
        return
    for name in ("report.md", "metrics.json"):
        if (out / name).is_file():
            stem, _, ext = name.rpartition(".")
            atomic_write_bytes(out / f"{stem}.previous.{ext}", (out / name).read_bytes(), within=out)
    warn(f"{out}: the new report holds less than the one it replaces (models, attack results, images: "
         f"{before} before, {after} now); the old one is kept as report.previous.md and metrics.previous.json")


def _write_report(view: ReportView, out: Path, plots: bool, cards_dir, warn) -> None:
    results = view.results
    out.mkdir(parents=True, exist_ok=True)
    summary = metrics_json(results)
    _keep_a_fuller_report(out, summary, warn)
    parts = [summary_markdown(view)]
    shown = layouts(results)
    for stale in sorted(set(TABLES) - set(shown)):    # written by an earlier report of this run, now wrong
        for ext in ("md", "csv", "tex"):
            stale_file = check_no_links(out / f"{stale}.{ext}", out)
            stale_file.unlink(missing_ok=True)
    for layout in shown:
        t = tables.build(results, layout, paper=view.paper_setting)
        atomic_write_text(out / f"{layout}.md", tables.to_markdown(t), within=out)
        atomic_write_text(out / f"{layout}.csv", tables.to_csv(t), within=out)
        atomic_write_text(out / f"{layout}.tex", tables.to_latex(t), within=out)
        parts += [f"## {t.title}" + (" (ours, and the paper's published numbers)" if view.paper_setting else ""),
                  "", tables.to_markdown(t)]
    parts += [checks_markdown(view), timing_markdown(view), suite_markdown(view), provenance_markdown(view)]
    if plots:
        imgs = plot_curves(results, out, within=out)
        parts += ["## Accuracy versus perturbation size", ""] + [f"![{p.stem}]({p.name})" for p in imgs]
    atomic_write_text(out / "report.md", "\n".join(parts) + "\n", within=out)
    atomic_write_text(out / "index.html", render_html(view, build_gallery(view)), within=out)
    # in the order metrics_json gives (the numbers to quote first); strict JSON: no NaN or Infinity gets through
    atomic_write_text(out / "metrics.json", json.dumps(summary, indent=2, allow_nan=False) + "\n", within=out)
    write_cards(view, out / "cards", within=out)
    if cards_dir:
        write_cards(view, Path(cards_dir))
