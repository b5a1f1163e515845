"""The HTML report page of a run: how long ``dim report`` takes, how big ``index.html`` is, and a screenshot.

    python benchmarks/bench_report_html.py RUN [--name report_html]

Renders the whole report of RUN (read-only; written into a temporary folder) ``--repeats``
times, takes the median seconds, and opens the page in Debian's chromium (Playwright) for two
screenshots: the top of the page and the gallery. Writes ``results/<name>.json``,
``results/<name>.png`` and ``results/<name>_gallery.png``. Targets: at most 10 MB and 30 s.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import RESULTS, write_result

from dim.report import build_report
from dim.store import Store

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", default="report_html")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    store = Store.of_run(args.run, read_only=True)
    try:
        models = [m["model"] for m in store.models()]
        shards = store.shards()
    finally:
        store.close()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report"
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            build_report(args.run, out_dir=out)
            times.append(time.perf_counter() - t0)
        page = out / "index.html"
        size = page.stat().st_size
        from playwright.sync_api import sync_playwright
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            pg = browser.new_page(viewport={"width": 1400, "height": 1800})
            errors: list[str] = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            t0 = time.perf_counter()
            pg.goto(page.as_uri())
            pg.wait_for_load_state("load")
            load_seconds = time.perf_counter() - t0
            pg.screenshot(path=str(RESULTS / f"{args.name}.png"))
            pg.locator("#gallery").screenshot(path=str(RESULTS / f"{args.name}_gallery_full.png"))
            browser.close()
    from PIL import Image
    full = Image.open(RESULTS / f"{args.name}_gallery_full.png")
    full.crop((0, 0, full.width, min(full.height, 2200))).save(RESULTS / f"{args.name}_gallery.png", optimize=True)
    (RESULTS / f"{args.name}_gallery_full.png").unlink()
    write_result(args.name, {
        "run": str(args.run), "models": models, "finished_shards": sum(s["status"] == "done" for s in shards),
        "report_seconds": [round(t, 2) for t in times], "median_report_seconds": round(statistics.median(times), 2),
        "index_html_bytes": size, "browser_load_seconds": round(load_seconds, 2), "page_errors": errors,
        "screenshots": [f"{args.name}.png", f"{args.name}_gallery.png"],
        "targets": {"index_html_bytes_max": 10_000_000, "report_seconds_max": 30}})


if __name__ == "__main__":
    main()
