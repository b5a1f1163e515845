"""The HTML report page: self-contained, escaped, and checked in a real browser (Debian's chromium)."""
import json
import shutil

import numpy as np
import pytest

import evalkit
from dim import data
from dim.api import eval_model_from_dir
from dim.attacks.spec import AttackSpec
from dim.evaluation.artifacts import load_adversarials
from dim.core.norms import Norm
from dim.evaluation.runner import EvalModel, evaluate_models
from dim.report import build_report
from dim.report.gallery import build_gallery
from dim.report.view import build_view
from dim.store import Store

pytestmark = pytest.mark.slow   # a headless browser and a trained DIM

HOSTILE = "<script>alert(1)</script>"
SUITE = (AttackSpec("Linf FGSM", "LinfFastGradientAttack", Norm.LINF),
         AttackSpec("Linf PGD", "LinfProjectedGradientDescentAttack", Norm.LINF, {"steps": 10}),
         AttackSpec("L2 DDN", "DDNAttack", Norm.L2, {"steps": 20}))


@pytest.fixture(scope="module")
def run(tmp_path_factory, trained_dim):
    """A small run: a softmax regression, the same under a hostile name, and the session's briefly trained DIM from
    its model directory."""
    root = tmp_path_factory.mktemp("html")
    dim_dir, _ = trained_dim
    x, y = data.load_split("mnist", "test", limit=60)
    models = [EvalModel("tiny", evalkit.tiny_model()), EvalModel(HOSTILE, evalkit.tiny_model(seed=1)),
              eval_model_from_dir(dim_dir, device="cpu")]
    evaluate_models(models, x, y, suite=SUITE, run_dir=root / "run", batch_size=30, show=False, checks=False)
    build_report(root / "run", plots=False)
    return root / "run"


def test_the_page_is_one_self_contained_file_with_names_escaped(run):
    html = (run / "report" / "index.html").read_text()
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<link " not in html and 'src="http' not in html and "src='http" not in html
    assert (run / "report" / "index.html").stat().st_size < 10_000_000


def test_the_gallery_holds_worst_case_adversarials_and_inside_dim(run):
    store = Store.of_run(run, read_only=True)
    try:
        view = build_view(store, run)
    finally:
        store.close()
    g = build_gallery(view, per_norm=3)
    assert g is not None
    for (model, norm), items in g.shown.items():
        eps = view.threat.threshold(norm)
        dists = [a.distance for a in items]
        assert dists == sorted(dists, reverse=True) and all(0 < d <= eps * (1 + 1e-6) for d in dists)
        for a in items:   # each is the smallest stored distance of its norm for that sample
            best = min(float(d) for atk in SUITE if atk.norm is norm
                       for s, d in zip(*(lambda z: (z["sample"], z["distance"]))(load_adversarials(run, model, atk.name)))
                       if int(s) == a.sample)
            assert a.distance == pytest.approx(best) and a.pred != a.label
    dim_shown = [a for (m, _), items in g.shown.items() if m == "dim" for a in items]
    assert dim_shown, "DIM has no adversarial in the gallery"
    inside = [v for (m, _, _), v in g.inside.items() if m == "dim"]
    assert len(inside) == len(dim_shown) and all(len(v.scores[0]) == 10 and v.reconstructions[0].shape == (10, 1, 28, 28)
                                                  for v in inside)
    assert not any(m != "dim" for (m, _, _) in g.inside)         # only DIM-family models are looked inside


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# as root, without the sandbox; and without Chromium's own background traffic, which a closed network refuses
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page(run):
    if CHROMIUM is None:
        pytest.skip("no chromium here (scripts/test.sh installs Debian's chromium package)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        events = {"errors": [], "requests": [], "dialogs": []}
        pg.on("console", lambda m: m.type == "error" and events["errors"].append(m.text))
        pg.on("pageerror", lambda e: events["errors"].append(str(e)))
        pg.on("request", lambda r: events["requests"].append(r.url))
        pg.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
        pg.goto((run / "report" / "index.html").as_uri())
        pg.wait_for_selector("#curve-Linf .main-svg")          # plotly drew the curves
        yield pg, events
        browser.close()


def test_in_chromium_no_console_error_no_network_request_no_script_from_a_name(page, run):
    pg, events = page
    assert events["errors"] == []
    assert [u for u in events["requests"] if not u.startswith("data:")] == [(run / "report" / "index.html").as_uri()]
    assert events["dialogs"] == []
    names = pg.locator("#summary-table .model-name").all_inner_texts()
    assert HOSTILE in names and "tiny" in names
    header = pg.eval_on_selector_all("#table-table1 thead th", "ths => ths.map(t => t.textContent.trim())")
    assert "tiny" in header and HOSTILE in header     # unnamed models: one column each, by key


def test_in_chromium_the_summary_shows_the_numbers_of_metrics_json(page, run):
    pg, _ = page
    metrics = {m["model"]: m for m in json.loads((run / "report" / "metrics.json").read_text())}
    rows = pg.eval_on_selector_all("#summary-table tbody tr", """rows => rows.map(r => ({model: r.dataset.model,
        cells: Object.fromEntries(Array.from(r.querySelectorAll('td[data-field]')).map(c => [c.dataset.field, c.dataset.value]))}))""")
    assert sorted(r["model"] for r in rows) == sorted(metrics)
    for r in rows:
        m = metrics[r["model"]]
        assert float(r["cells"]["clean"]) == pytest.approx(m["clean_accuracy"], abs=1e-6)
        for norm, label in (("L2", "L2"), ("Linf", "L∞")):
            assert float(r["cells"][label]) == pytest.approx(m["paper_protocol"]["per_norm"][norm]["accuracy"],
                                                             abs=1e-6)
        assert float(r["cells"]["minimal"]) == pytest.approx(m["paper_protocol"]["minimal_accuracy"], abs=1e-6)
        # union: robust in every norm at once (the same as the paper protocol's where no adaptive attack ran)
        assert float(r["cells"]["union"]) == pytest.approx(m["robust"]["union"]["accuracy"], abs=1e-6)
        assert m["robust"]["union"]["accuracy"] <= min(v["accuracy"] for v in m["robust"]["per_norm"].values()) + 1e-9


def test_in_chromium_sorting_a_column_reorders_the_rows(page):
    pg, _ = page
    table = "#table-table1"
    col = pg.eval_on_selector_all(f"{table} thead th", "ths => ths.findIndex(t => t.textContent.trim().startsWith('tiny'))")
    assert col > 0

    def keys() -> list:
        return pg.eval_on_selector_all(f"{table} tbody tr", f"rows => rows.map(r => r.cells[{col}].dataset.key)")

    before = keys()
    pg.locator(f"{table} thead th").nth(col).click()
    asc = keys()
    pg.locator(f"{table} thead th").nth(col).click()
    desc = keys()
    numbers = [float(k) for k in asc if k != ""]
    assert numbers == sorted(numbers) and len(numbers) >= 3 and asc != desc
    assert [float(k) for k in desc if k != ""] == sorted(numbers, reverse=True)
    assert sorted(before) == sorted(asc)                          # the same rows, reordered
    pg.select_option(".f-norm[data-table='table1']", "L2")
    shown = pg.eval_on_selector_all(f"{table} tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.dataset.norm)")
    assert shown and set(shown) == {"L2"}


def test_in_chromium_gallery_pixels_decode_to_the_stored_adversarials(page, run):
    pg, _ = page
    cards = pg.eval_on_selector_all("#gallery .adv", """cards => cards.map(c => {
        const img = c.querySelector('img.adversarial'), cv = document.createElement('canvas');
        cv.width = img.naturalWidth; cv.height = img.naturalHeight;
        const ctx = cv.getContext('2d'); ctx.drawImage(img, 0, 0);
        const px = ctx.getImageData(0, 0, cv.width, cv.height).data;
        return {model: c.dataset.model, attack: c.dataset.attack, sample: +c.dataset.sample,
                gray: Array.from(px).filter((_, i) => i % 4 == 0), inside: !!c.querySelector('.inside')};
    })""")
    assert cards and {c["model"] for c in cards} >= {"tiny", "dim"}
    for c in cards:
        adv = load_adversarials(run, c["model"], c["attack"])
        stored = adv["x_adv"][list(adv["sample"]).index(c["sample"])]
        assert np.array_equal(np.array(c["gray"], np.uint8), np.round(stored[0].ravel() * 255).astype(np.uint8))
        assert c["inside"] == (c["model"] == "dim")
    pg.locator("#gallery .adv").first.click()                     # one sample, every model
    assert pg.locator("#compare").is_visible()
    assert sorted(pg.eval_on_selector_all("#compare-body .compare-item", "e => e.map(x => x.dataset.model)")) \
        == sorted(["tiny", HOSTILE, "dim"])


def test_in_chromium_a_run_on_your_own_data_shows_no_paper_column(page, tmp_path, tiny, test_data):
    """Your own data (a run of dim.evaluate names no dataset, so it is not the paper's): no table on the page, and
    none of the Markdown, CSV or LaTeX tables, puts the paper's published numbers beside yours."""
    import dim
    x, y = test_data
    dim.evaluate(tiny, x[:20], y[:20], name="cnn", suite="quick:Linf FGSM,L2 DDN", run_dir=tmp_path, show=False,
                 checks=False)
    report = tmp_path / "report"
    for f in ("table1.md", "table1.csv", "table1.tex", "report.md"):
        assert "(paper)" not in (report / f).read_text(), f
    other = page[0].context.browser.new_page()          # the module's browser, another tab
    try:
        other.goto((report / "index.html").as_uri())
        headers = other.eval_on_selector_all("table thead th", "ths => ths.map(t => t.textContent.trim())")
    finally:
        other.close()
    assert "cnn" in headers and not any("(paper)" in h for h in headers), headers
    # the same model on MNIST, said so, does get the paper's column
    dim.evaluate(tiny, x[:20], y[:20], name="cnn", suite="quick:Linf FGSM,L2 DDN", run_dir=tmp_path / "mnist",
                 show=False, checks=False, dataset="mnist")
    assert "| cnn | cnn (paper) |" in (tmp_path / "mnist" / "report" / "table1.md").read_text()
