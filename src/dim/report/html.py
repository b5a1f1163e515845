"""The HTML renderer: one self-contained ``index.html`` per run, a pure function of the report's view.

Everything is inline (CSS, scripts, the plotting library, images as PNG data URIs, the data),
so the page opens from ``file://`` on a machine without network. Libraries, each for what it
does well: Jinja2 renders the template with autoescaping on, so every name that comes from a
card, a factory or an attack spec is text, never markup; Plotly draws the accuracy curves
(its JavaScript is inlined from the Python package; the figures are plain JSON in plotly.js's schema;
hovering shows the values); Pillow encodes
the images. Sorting and filtering the tables is a few lines of our own script in the template.
"""
from __future__ import annotations

import base64
import io
import json
import math
import re
from typing import Any

import numpy as np

from ..core.device import describe
from ..evaluation import checks, metrics
from ..core.norms import Norm
from ..provenance import devices_of
from . import tables
from .gallery import Adversarial, Gallery
from .markdown import _eps_text
from .view import ReportView, layouts, quoted, samples_text, selection_text


def png(image: np.ndarray) -> str:
    """A (C, H, W) image in [0, 1] as a PNG data URI (8 bits: the stored value rounded to 1/255)."""
    from PIL import Image
    a = np.clip(np.nan_to_num(np.asarray(image, np.float32)), 0, 1)
    a = np.round(a * 255).astype(np.uint8)
    img = Image.fromarray(a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def heat(delta: np.ndarray) -> str:
    """A perturbation as a heat map (red: pixel made brighter, blue: darker, white: unchanged), scaled to its
    largest change."""
    import matplotlib
    d = np.asarray(delta, np.float32).mean(0)
    scale = float(np.abs(d).max()) or 1.0
    rgb = matplotlib.colormaps["RdBu_r"]((d / scale + 1) / 2)[..., :3]
    return png(np.moveaxis(rgb, -1, 0))


_PERCENT = re.compile(r"(?:^|/)(-?\d+(?:\.\d+)?)%")


def sort_key(cell: str) -> float | None:
    """The accuracy a table cell shows (``45% [38-52]`` -> 45, ``1.2/45%`` -> 45), for sorting; None if none."""
    m = _PERCENT.search(cell)
    return float(m.group(1)) if m else None


def _acc(v: float) -> dict[str, Any]:
    return {"text": tables.fmt_acc(v), "value": None if v is None or math.isnan(v) else round(v, 6)}


def _summary(view: ReportView) -> list[dict[str, Any]]:
    rows = []
    for r in view.results:
        norms = []
        for n in tables.NORM_ORDER:
            base, full = r.norms.get(n), quoted(r, n)
            norms.append({"norm": n.label, "paper": _acc(base.accuracy) if base else None,
                          "quoted": _acc(full.accuracy) if full else None,
                          "interval": tables.fmt_interval(full.interval) if full else "",
                          "median": tables.fmt_dist(full.median) if full else "-",
                          "adaptive_differs": bool(base and full and full.attacks != base.attacks)})
        minimal = r.minimal_accuracy_all if r.has_adaptive else r.minimal_accuracy
        union = r.union_all if r.has_adaptive else r.union
        outcomes = view.outcomes[r.model]
        rows.append({
            "model": r.model, "paper_name": r.paper_name, "clean": _acc(r.clean_accuracy),
            "clean_interval": tables.fmt_interval(r.clean_interval), "norms": norms, "minimal": _acc(minimal),
            "minimal_interval": tables.fmt_interval(r.minimal_interval(r.has_adaptive)),
            "minimal_attack": (r.minimal_attack_all if r.has_adaptive else r.minimal_attack) or "-",
            "union": _acc(union.accuracy if union else float("nan")),
            "union_interval": tables.fmt_interval(union.interval) if union else "",
            "union_broken_by": ("samples per set of norms that broke them: " + tables.fmt_sets(union.broken_by)
                                if union and union.broken_by else ""),
            "binarized": view.binarized.get(r.model, False),
            "warnings": [f"{checks.CHECKS[c].title}: {o.value}" for c, o in outcomes.items() if o.status == checks.WARN],
            "checks_passed": sum(1 for o in outcomes.values() if o.status == checks.PASS),
            "missing": [f"{a} ({why})" for a, _, why in view.missing.get(r.model, [])],
        })
    return rows


def _tables(view: ReportView) -> list[dict[str, Any]]:
    out = []
    for layout in layouts(view.results):
        t = tables.build(view.results, layout, paper=view.paper_setting)
        rows = [{"cells": [{"text": c, "key": sort_key(c) if j else None} for j, c in enumerate(row)], **meta}
                for i, (row, meta) in enumerate(zip(t.rows, t.row_meta)) if i not in t.section_rows]
        out.append({"id": layout, "title": t.title, "header": t.header, "rows": rows})
    return out


PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def _curves(view: ReportView) -> list[dict[str, Any]]:
    """Plotly figures as data (plotly.js's JSON schema; drawn by the page's script, so no markup from a name
    enters the page)."""
    out = []
    axis = {"gridcolor": "#e5e8ee", "zeroline": False}
    color = {r.model: PALETTE[i % len(PALETTE)] for i, r in enumerate(view.results)}   # one colour per model
    for norm in tables.NORM_ORDER:
        have = [r for r in view.results if norm in r.norms_all or norm in r.norms]
        if not have:
            continue
        grid = np.linspace(0, view.threat.grid(norm)[-1], 121)
        eps = view.threat.threshold(norm)
        traces = [{"type": "scatter", "mode": "lines", "name": r.model, "x": np.round(grid, 4).tolist(),
                   "y": np.round(100 * metrics.accuracy_curve((r.norms_all.get(norm) or r.norms[norm]).distances,
                                                              grid), 2).tolist(),
                   "line": {"color": color[r.model]}, "hovertemplate": "%{y:.1f}% at %{x:.3g}"} for r in have]
        layout = {"title": {"text": f"{norm.label}: accuracy versus perturbation size (worst case, all attacks)",
                            "font": {"size": 14}},
                  "xaxis": {**axis, "title": {"text": f"{norm.label} perturbation size"}},
                  "yaxis": {**axis, "title": {"text": "accuracy (%)"}, "range": [0, 100]},
                  "height": 360, "margin": {"l": 50, "r": 20, "t": 50, "b": 45}, "hovermode": "x unified",
                  "plot_bgcolor": "white", "paper_bgcolor": "white",
                  "shapes": [{"type": "line", "x0": eps, "x1": eps, "y0": 0, "y1": 1, "yref": "paper",
                              "line": {"dash": "dot", "color": "grey", "width": 1}}]}
        out.append({"norm": norm.value, "figure": {"data": traces, "layout": layout}})
    return out


def _suite(view: ReportView) -> list[dict[str, Any]]:
    from ..attacks.spec import is_black_box
    from .suite_text import params_text
    seconds = {(r.model, a.attack): a.seconds for r in view.results for a in r.attacks.values()}
    rows = []
    for i, a in enumerate(view.attacks, 1):
        s = a["spec"]
        params = params_text(s)
        family = "black box" if is_black_box(s["attack"]) else "adaptive" if s.get("adaptive") else "paper"
        rows.append({"i": i, "name": a["attack"], "norm": a["norm"], "cls": s["attack"], "params": params,
                     "family": family, "seconds": [round(seconds.get((r.model, a["attack"]), 0.0), 1)
                                                   for r in view.results]})
    return rows


def _provenance(view: ReportView) -> list[tuple[str, str]]:
    prov, cfg = view.provenance, view.config
    devices = devices_of(prov)
    items = [("git commit", tables.commits_text(prov)), ("created", str(prov.get("created", "?"))),
             ("suite", str(cfg.get("suite"))), ("samples", f"{cfg.get('n')} of {cfg.get('dataset', 'mnist')}{selection_text(cfg)}"),
             ("seed", str(cfg.get("seed"))), ("thresholds", _eps_text(view.threat)),
             ("devices", "; ".join(describe(d) for d in devices) or "not recorded"),
             ("shards per device", "; ".join(f"{d or 'not recorded'}: {n}" for d, n in view.shard_devices.items())),
             ("executors", ", ".join(prov.get("executors", ["serial"]))),
             ("reused shards", f"{len(view.reused)} from {', '.join(sorted(set(view.reused.values())))}"
              if view.reused else "none"),
             ("packages", ", ".join(f"{k} {v}" for k, v in sorted((prov.get("packages") or {}).items())))]
    for key, m in view.models.items():
        card = m.get("card") or {}
        items.append((f"model {key}", f"card sha256 {m.get('card_sha256') or '-'}"
                      + (f", trained on {describe(card['device'])}" if card.get("device") else "")
                      + (f", factory {card['factory']}" if card.get("factory") else "")))
    return items


def _adv_json(a: Adversarial | None, clean: np.ndarray) -> dict[str, Any] | None:
    if a is None:
        return None
    return {"model": a.model, "sample": a.sample, "label": a.label, "pred": a.pred, "attack": a.attack,
            "distance": round(a.distance, 4), "adv": png(a.x_adv), "heat": heat(a.x_adv - clean)}


def _gallery(view: ReportView, g: Gallery | None) -> dict[str, Any] | None:
    if g is None:
        return None
    clean = {s: png(x) for s, x in g.clean.items()}
    sections = []
    for r in view.results:
        for norm in tables.NORM_ORDER:
            items = g.shown.get((r.model, norm), [])
            if not items:
                continue
            cards = []
            for a in items:
                card = _adv_json(a, g.clean[a.sample])
                inside = g.inside.get((r.model, norm, a.sample))
                if inside is not None:
                    card["inside"] = [{"what": what, "denoised": png(inside.denoised[k]),
                                       "recs": [png(np.clip(im, 0, 1)) for im in inside.reconstructions[k]],
                                       "scores": [round(v, 3) for v in inside.scores[k]],
                                       "best": int(np.argmax(inside.scores[k]))}
                                      for k, what in enumerate(("clean", "adversarial"))]
                cards.append(card)
            sections.append({"model": r.model, "norm": norm.label, "norm_key": norm.value,
                             "eps": round(view.threat.threshold(norm), 4), "cards": cards})
    compare = {f"{norm.value}/{s}": [_adv_json(a, g.clean[s]) if a else {"model": m, "none": True}
                                      for m, a in per_model.items()]
               for (norm, s), per_model in g.others.items()}
    return {"clean": {str(s): u for s, u in clean.items()}, "sections": sections, "compare": compare, "note": g.note}


def render_html(view: ReportView, gallery: Gallery | None) -> str:
    """The page, as a string."""
    import jinja2
    import plotly.offline
    env = jinja2.Environment(loader=jinja2.PackageLoader("dim.report", "templates"),
                             autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    g = _gallery(view, gallery)
    data = {"compare": g["compare"] if g else {}, "clean": g["clean"] if g else {}, "curves": _curves(view)}
    return env.get_template("index.html.j2").render(
        cfg=view.config, samples=samples_text(view.config), eps=_eps_text(view.threat), summary=_summary(view), tables=_tables(view),
        curves=data["curves"], suite=_suite(view), models=[r.model for r in view.results],
        provenance=_provenance(view), gallery=g, norms=[n.value for n in tables.NORM_ORDER],
        norm_labels={n.value: n.label for n in Norm},
        plotly_js=plotly.offline.get_plotlyjs(),
        # inside a <script type="application/json">: only "</" could end it early, and json.dumps leaves no raw "<"
        page_data=json.dumps(data).replace("<", "\\u003c"))
