"""dim compare: every card a row of its own, edited cards flagged, cards measured differently in tables of their
own, the paper's numbers only where its setting holds, an L0 threshold of about one pixel flagged."""
import json
import shutil
from pathlib import Path

from dim.report.cards import content_sha256
from dim.report.compare import compare, load_cards, to_markdown

RESULTS = Path(__file__).resolve().parent.parent / "results"


def _card(tmp_path, folder, name="cnn", **changes):
    card = json.loads((RESULTS / f"{name}.json").read_text())
    for path, value in changes.items():
        *keys, last = path.split("__")
        node = card
        for k in keys:
            node = node[k]
        node[last] = value
    card["content_sha256"] = content_sha256(card)     # written so, as dim report writes a card
    (tmp_path / folder).mkdir(exist_ok=True)
    (tmp_path / folder / f"{name}.json").write_text(json.dumps(card, indent=2, sort_keys=True))
    return tmp_path / folder / f"{name}.json"


def test_two_cards_of_one_model_name_are_two_rows_labelled_by_file(tmp_path):
    a = _card(tmp_path, "a")
    b = _card(tmp_path, "b", clean_accuracy=0.5)
    rows = compare(load_cards([tmp_path / "a", b, a]), None, 0)       # a named twice is still one card
    assert len(rows) == 2 and {r["card"] for r in rows} == {str(a), str(b)}
    text = to_markdown(rows)
    assert f"(`cnn`) from `{a}`" in text and f"(`cnn`) from `{b}`" in text


def test_a_card_edited_after_it_was_written_is_flagged(tmp_path):
    path = _card(tmp_path, "a")
    shutil.copy(RESULTS / "dim.json", tmp_path / "a" / "dim.json")
    card = json.loads(path.read_text())
    card["incl_adaptive"]["per_norm"]["L2"]["accuracy"] = 0.99               # edited by hand
    path.write_text(json.dumps(card, indent=2, sort_keys=True))
    rows = compare(load_cards([tmp_path / "a"]), None, 0)
    assert {r["model"]: r["edited"] for r in rows} == {"cnn": True, "dim": False}
    text = to_markdown(rows)
    assert "(`cnn`) **EDITED" in text and "(`dim`) **EDITED" not in text
    assert f"1 card(s) were changed after they were written** (their content does not match the hash they " \
           f"carry): `{path}`" in text


def test_cards_measured_differently_sit_in_tables_of_their_own_and_paper_numbers_only_in_the_papers_setting(
        tmp_path):
    _card(tmp_path, "a", "cnn")
    _card(tmp_path, "a", "dim")
    thresholds = {"L0": 0.98, "L1": 1.96, "L2": 0.73, "Linf": 0.3}      # 3 x 8 x 8 images: L0 is one pixel
    changes = {f"incl_adaptive__per_norm__{n}__threshold": t for n, t in thresholds.items()}
    _card(tmp_path, "b", "madry", evaluation__dataset="/data/mine", **changes)
    rows = compare(load_cards([tmp_path / "a", tmp_path / "b"]), None, 0)
    text = to_markdown(rows)
    mnist, mine = text.split("**/data/mine**")
    assert mnist.count("| CNN (`cnn`)") == 1 and mnist.count("| DIM (`dim`)") == 1 and "Madry" not in mnist
    assert "(paper " in mnist
    table = mine.split("\n\nEach cell")[0]
    assert "| Madry (`madry`)" in table and "(paper " not in table
    assert "No paper numbers" in table and "**L0 at 0.98 pixel(s)**" in table
    assert "L2 (0.73)" in table and "L2 (1.5)" in mnist


def test_the_committed_cards_carry_their_hash_and_none_is_edited():
    rows = compare(load_cards([RESULTS]), None, 0)
    assert rows and all(r["edited"] is False for r in rows)


def test_published_results_are_printed_apart_each_with_its_own_thresholds():
    from dim.report.compare import render
    from dim.report.published import PUBLISHED
    rows, plain = render([RESULTS / "madry.json"])
    rows_p, text = render([RESULTS / "madry.json"], published=True)
    assert rows_p == rows and text.startswith(plain)              # measured rows untouched, nothing mixed in
    assert "published (not measured here)" not in plain
    tail = text[len(plain):]
    for entry in PUBLISHED:
        (line,) = [ln for ln in tail.splitlines() if ln.startswith(f"| {entry.label} ")]
        assert f"**{entry.union:.1f}%**" in line and f"first {entry.images:,} test images" in line
        for norm, (eps, acc) in entry.norms.items():
            assert f"(eps {eps:g})" in line and (acc is None or f"{acc:.1f}% (eps {eps:g})" in line), (norm, line)
        assert line.count("not measured") == 4 - len(entry.norms)     # L0: no published model lists it
