"""Do two versions of the code render the same report from the same store? The check for a refactor that must not
change what a run shows.

    python benchmarks/render_identity.py runs/quick runs/table1 --base cfa3bae            # base against this tree
    python benchmarks/render_identity.py runs/quick --base v1 --head v2 --name moves

For each run, ``dim report RUN --out DIR --cards DIR/cards`` runs once with the package of ``--base`` (a git
revision, unpacked with ``git archive``) and once with ``--head`` (a revision, or this working tree when not
given); every file of the two outputs (report.md, Table 1/2 as Markdown/CSV/LaTeX, metrics.json, the cards,
index.html, the figures) is compared byte for byte. Writes ``results/render_identity_<name>.json`` with each
file's SHA-256 on both sides and the files that differ; exits 1 when any does. The stores are only read.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from common import write_result

ROOT = Path(__file__).resolve().parent.parent


def unpack(rev: str, into: Path) -> Path:
    """The ``src/`` tree of git revision ``rev`` under ``into``; returns the folder to put on PYTHONPATH."""
    tar = subprocess.run(["git", "archive", "--format=tar", rev, "src"], cwd=ROOT, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
        t.extractall(into, filter="data")
    return into / "src"


def render(src: Path, run: Path, out: Path) -> dict[str, str]:
    """Render ``run`` with the package in ``src``; the SHA-256 of every file written, by relative path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    r = subprocess.run([sys.executable, "-m", "dim", "report", str(run), "--out", str(out), "--cards",
                        str(out / "cards")], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"dim report {run} with {src} failed ({r.returncode}): {r.stderr.strip()[-800:]}")
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run directories with a results.sqlite")
    ap.add_argument("--base", required=True, help="git revision rendered first")
    ap.add_argument("--head", default=None, help="git revision compared with it (default: this working tree)")
    ap.add_argument("--name", default="layout", help="results/render_identity_<name>.json")
    args = ap.parse_args()
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="dim-render-") as tmp:
        tmp = Path(tmp)
        base_src = unpack(args.base, tmp / "base")
        head_src = unpack(args.head, tmp / "head") if args.head else ROOT / "src"
        for run in args.runs:
            a = render(base_src, run.resolve(), tmp / "out" / run.name / "base")
            b = render(head_src, run.resolve(), tmp / "out" / run.name / "head")
            differ = sorted(f for f in set(a) | set(b) if a.get(f) != b.get(f))
            out[str(run)] = {"files": len(set(a) | set(b)), "differ": differ, "base": a, "head": b}
            print(f"{run}: {len(set(a) | set(b))} files, {len(differ)} differ {differ or ''}", flush=True)
    head_rev = args.head or subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                           text=True).stdout.strip() + " (working tree)"
    identical = all(not r["differ"] for r in out.values())
    write_result(f"render_identity_{args.name}", {"base": args.base, "head": head_rev, "identical": identical,
                                                  "runs": out}, echo=False)
    sys.exit(0 if identical else 1)


if __name__ == "__main__":
    main()
