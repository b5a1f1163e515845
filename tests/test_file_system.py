"""File-system failures are one clear error, and nothing stored is lost or half-written.

Read-only media and a full disk are made real, not mocked: each command runs in its own
mount namespace (``unshare -m``) where the run directory is bind-mounted read-only, or is a
small tmpfs. Root ignores permission bits, so a read-only mount is the only honest way to
test this as root; where the kernel refuses namespaces these tests skip and say why.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dim.report import build_report

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "DIM_NO_PROGRESS": "1",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
UNSHARE = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
DIM = [sys.executable, "-m", "dim"]


def _namespaces() -> str | None:
    """Why mount namespaces cannot be used here, or None if they can."""
    try:
        r = subprocess.run([*UNSHARE, "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs "$d" '
                            '&& mount --bind -o ro "$d" "$d"'], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare unavailable ({exc})"
    return None if r.returncode == 0 else f"mount namespaces refused here ({r.stderr.strip()[:200]})"


NO_NAMESPACES = _namespaces()
needs_namespaces = pytest.mark.skipif(NO_NAMESPACES is not None, reason=str(NO_NAMESPACES))


def in_namespace(setup: str, *commands: list[str]) -> list[tuple[int, str, str]]:
    """Run ``setup`` (shell) then each command in one private mount namespace; (rc, stdout, stderr) each."""
    logs = Path(tempfile.mkdtemp(prefix="dim-ns-"))
    script = setup + "\nset +e\n" + "\n".join(
        f"{shlex.join(c)} >{logs}/{i}.out 2>{logs}/{i}.err; echo $? >{logs}/{i}.rc" for i, c in enumerate(commands))
    try:
        r = subprocess.run([*UNSHARE, "sh", "-ec", script], capture_output=True, text=True, env=ENV, timeout=600)
        assert r.returncode == 0, f"namespace setup failed: {r.stderr[-2000:]}"
        return [(int((logs / f"{i}.rc").read_text()), (logs / f"{i}.out").read_text(),
                 (logs / f"{i}.err").read_text()) for i in range(len(commands))]
    finally:
        shutil.rmtree(logs, ignore_errors=True)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


QUICK = ["--model-factory", "evalkit:tiny_model", "--suite", "quick", "--n", "10", "--batch-size", "5",
         "--no-checks", "--no-report"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, data_dir):
    """A run of the quick suite of which one attack (Linf FGSM) is done, with its report."""
    run = tmp_path_factory.mktemp("fs") / "run"
    r = subprocess.run([*DIM, "evaluate", *QUICK, "--run", str(run), "--only", "Linf FGSM"], capture_output=True,
                       text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    build_report(run, plots=False)
    return run


@needs_namespaces
@pytest.mark.slow
def test_a_read_only_run_is_read_by_status_and_report_elsewhere_and_never_changed(small_run, tmp_path):
    before = _tree(small_run)
    elsewhere = tmp_path / "elsewhere"
    (status, report_out, report_in, evaluate) = in_namespace(
        f"mount --bind -o ro {shlex.quote(str(small_run))} {shlex.quote(str(small_run))}",
        [*DIM, "status", str(small_run)],
        [*DIM, "report", str(small_run), "--out", str(elsewhere)],
        [*DIM, "report", str(small_run)],
        [*DIM, "evaluate", *QUICK, "--run", str(small_run), "--only", "L2 DDN"])
    assert status[0] == 0 and "tiny_model:" in status[1] and "shards finished (" in status[1], status
    assert report_out[0] == 0, report_out[2][-2000:]
    assert json.loads((elsewhere / "metrics.json").read_text()) == \
        json.loads((small_run / "report" / "metrics.json").read_text())
    assert (elsewhere / "cards" / "tiny_model.json").is_file()
    # writing into the read-only run: one error line naming the folder and what to do instead
    assert report_in[0] == 2 and "cannot write the report" in report_in[2] and "--out" in report_in[2], report_in
    assert str(small_run / "report") in report_in[2].replace("\n", "")
    assert evaluate[0] == 2 and str(small_run) in evaluate[2].replace("\n", "") and "read-only" in evaluate[2]
    for _, _, stderr in (status, report_out, report_in, evaluate):
        assert "Traceback" not in stderr
    assert _tree(small_run) == before       # not a byte changed, no side file left


@needs_namespaces
@pytest.mark.slow
def test_a_full_disk_is_one_clear_error_and_the_rerun_finishes_the_same(small_run, tmp_path):
    disk, ref = tmp_path / "disk", tmp_path / "ref"
    disk.mkdir()
    suite = QUICK
    run = disk / "run"
    (full, status, again, rows) = in_namespace(
        f"mount -t tmpfs -o size=8m tmpfs {shlex.quote(str(disk))}\n"
        f"cp -a {shlex.quote(str(small_run))} {shlex.quote(str(run))}\n"
        f"dd if=/dev/zero of={shlex.quote(str(disk / 'fill'))} bs=4k 2>/dev/null || true",
        [*DIM, "evaluate", *suite, "--run", str(run)],
        ["sh", "-c", f"rm {shlex.quote(str(disk / 'fill'))} && {shlex.join([*DIM, 'status', str(run)])}"],
        [*DIM, "evaluate", *suite, "--run", str(run)],
        [sys.executable, "-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("
                               "'SELECT COUNT(*) FROM results').fetchone()[0])", str(run / "results.sqlite")])
    assert full[0] == 2, full
    assert "Traceback" not in full[2] and ("disk is full" in full[2] or "No space left" in full[2]), full[2][-2000:]
    assert str(disk) in full[2].replace("\n", "")
    assert status[0] == 0, status          # the store survived the full disk and is readable
    assert again[0] == 0, again[2][-2000:]
    r = subprocess.run([*DIM, "evaluate", *suite, "--run", str(ref)], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    import sqlite3
    n_ref = sqlite3.connect(ref / "results.sqlite").execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert int(rows[1].strip()) == n_ref      # every row once: the copied FGSM rows and the four attacks after


@needs_namespaces
def test_data_fetch_into_a_read_only_folder_is_one_clear_error(tmp_path, data_dir):
    target = tmp_path / "data"
    target.mkdir()
    (fetch,) = in_namespace(f"mount --bind -o ro {shlex.quote(str(target))} {shlex.quote(str(target))}",
                            [*DIM, "data", "fetch", "--data-dir", str(target), "--source", str(data_dir / "mnist")])
    assert fetch[0] == 2 and "Traceback" not in fetch[2], fetch
    assert str(target) in fetch[2].replace("\n", "") and "Read-only file system" in fetch[2], fetch[2]
    assert not any(target.iterdir())


@pytest.mark.slow
def test_a_report_holding_less_than_the_one_it_replaces_keeps_the_old_one_and_says_so(small_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    old = (run / "report" / "report.md").read_text()
    warnings = []
    r = subprocess.run([*DIM, "evaluate", *QUICK, "--run", str(run), "--only", "Linf PGD"], capture_output=True,
                       text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    build_report(run, plots=False, warn=warnings.append)
    assert warnings == []                      # it holds more than before: replaced without a word
    fuller = (run / "report" / "report.md").read_text()
    assert "Linf PGD" in fuller and fuller != old
    # the store goes back to its state before PGD (restored from a backup, say): the report would shrink
    for f in run.glob("results.sqlite*"):
        f.unlink()
    for f in small_run.glob("results.sqlite*"):
        shutil.copy(f, run / f.name)
    build_report(run, plots=False, warn=warnings.append)
    assert len(warnings) == 1 and "holds less than the one it replaces" in warnings[0], warnings
    assert (run / "report" / "report.previous.md").read_text() == fuller
    assert "Linf PGD" in (run / "report" / "metrics.previous.json").read_text()
    assert "Linf PGD" not in (run / "report" / "metrics.json").read_text()


def test_a_store_of_an_earlier_version_is_read_without_a_write_and_upgraded_when_written(tmp_path):
    """`dim status` of an old run must not fail (readers open read-only) nor change the file."""
    import hashlib
    import sqlite3

    from dim.store import ADDED_COLUMNS, ADDED_TABLES, SCHEMA, Store
    old = SCHEMA
    for table, column in ADDED_COLUMNS:
        old = old.replace(f", {column} TEXT", "", 1)
    for table, columns in ADDED_TABLES.items():
        old = old.replace(f"CREATE TABLE IF NOT EXISTS {table} {columns};", "")
    db = tmp_path / "results.sqlite"
    con = sqlite3.connect(db)
    con.executescript(old)
    assert {r[1] for r in con.execute("PRAGMA table_info(shards)")} == {"model", "attack", "shard", "status", "error",
                                                                         "seconds"}
    con.execute("INSERT INTO shards VALUES ('m', 'a', 0, 'failed', 'boom', 1.5)")
    con.commit()
    con.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    store = Store(db, read_only=True)
    assert store.shards()[0]["device"] is None and store.failed_shards() == 1 and store.attempts("m", "a", 0) == []
    assert store.model_identity("m") is None
    store.close()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    store = Store(db)
    store.fail_shard("m", "a", 0, "again", 1.0, device="cpu")
    assert store.attempts("m", "a", 0)[0]["error"] == "again" and store.shard_device("m", "a", 0) == "cpu"
    store.close()
