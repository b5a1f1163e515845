"""README.md says what the committed files say."""
import re
from pathlib import Path

from dim.report.compare import render

ROOT = Path(__file__).resolve().parent.parent
# A block of README.md that `dim compare ARGS` renders: "<!-- NAME: dim compare ARGS -->" ... "<!-- end NAME -->".
BLOCK = re.compile(r"<!-- ([\w-]+): dim compare (.*?) -->\n(.*?)<!-- end \1 -->", re.S)


def compare_args(args: str) -> tuple[list[Path], int, bool]:
    """The cards, --strongest and --published of a block's `dim compare` command."""
    words, paths, strongest, published = args.split(), [], 3, False
    while words:
        w = words.pop(0)
        if w == "--strongest":
            strongest = int(words.pop(0))
        elif w == "--published":
            published = True
        else:
            paths.append(Path(w))          # as typed in ROOT: a card's label names its file so
    return paths, strongest, published


def test_the_readmes_tables_are_what_dim_compare_renders_from_the_cards(monkeypatch):
    monkeypatch.chdir(ROOT)
    blocks = BLOCK.findall((ROOT / "README.md").read_text())
    assert [name for name, _, _ in blocks] == ["results-table", "every-norm-table"], "README.md lost a table block"
    assert blocks[0][1] == "results/ --strongest 0"
    for name, args, text in blocks:
        paths, strongest, published = compare_args(args)
        _, want = render(paths, None, strongest, published)
        assert text == want, (f"README.md's {name} differs from the cards: paste the output of "
                              f"`dim compare {args}` between its markers")


def test_every_file_the_readme_and_docs_name_exists():
    names = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        names |= {m for m in re.findall(r"`((?:docs|results|benchmarks|scripts|src|tests)/[\w./{},*-]+)`",
                                        doc.read_text())}
    plain = [n for n in names if not set("{*,") & set(n)]
    missing = [n for n in plain if not (ROOT / n).exists()]
    assert not missing, missing
