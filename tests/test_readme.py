"""README.md says what the committed files say."""
import re
from pathlib import Path

from dim.report.compare import compare, load_cards, to_markdown

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- results-table: dim compare results/ --strongest 0 -->\n(.*?)<!-- end results-table -->",
                   re.S)


def test_the_readmes_results_table_is_what_dim_compare_renders_from_the_cards():
    found = BLOCK.search((ROOT / "README.md").read_text())
    assert found, "README.md lost its results-table block"
    want = to_markdown(compare(load_cards([ROOT / "results"]), None, 0))
    assert found.group(1) == want, ("README.md's results table differs from the cards: paste the output of "
                                    "`dim compare results/ --strongest 0` between its markers")


def test_every_file_the_readme_and_docs_name_exists():
    names = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        names |= {m for m in re.findall(r"`((?:docs|results|benchmarks|scripts|src|tests)/[\w./{},*-]+)`",
                                        doc.read_text())}
    plain = [n for n in names if not set("{*,") & set(n)]
    missing = [n for n in plain if not (ROOT / n).exists()]
    assert not missing, missing
