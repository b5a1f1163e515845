"""dim status: what is done and the seconds left."""
from pathlib import Path

import numpy as np
import pytest

import evalkit  # noqa: F401  (registers the test adapters)
from dim.evaluation.status import run_status, status_text
from dim.store import Store


TESTS = Path(__file__).resolve().parent


def test_status_estimates_the_seconds_left_from_the_finished_shards(tmp_path):
    """n = 50 in shards of 20: shards of 20, 20 and 10 images. Model b is 3x slower than a on the attack both
    finished; a BPDA attack already skipped on a costs nothing; an attack nobody finished has no estimate."""
    store = Store(tmp_path / "results.sqlite")
    try:
        store.set_meta("config", {"n": 50, "batch_size": 20})
        for m in ("a", "b"):
            store.add_model(m, m, m, {}, None, np.zeros(50, dtype=np.int64), np.zeros(50, dtype=np.int64))
        store.add_attacks([("L2 A", "L2", {"attack": "pgd", "params": {}}),
                           ("L2 B", "L2", {"attack": "pgd", "params": {"steps": 10}}),
                           ("L2 BPDA", "L2", {"attack": "pgd", "params": {"gradient": "bpda"}}),
                           ("L2 new", "L2", {"attack": "square", "params": {}})])
        for k, images in enumerate((20, 20, 10)):
            store.finish_shard("a", "L2 A", k, [], seconds=1.0 * images)    # 1 s per image
            store.finish_shard("b", "L2 A", k, [], seconds=3.0 * images)    # 3 s per image
        store.finish_shard("a", "L2 B", 0, [], seconds=40.0)                # 2 s per image
        store.fail_shard("a", "L2 BPDA", 0, "no binarization", 0.01, status="skipped")
        store.fail_shard("a", "L2 new", 0, "out of memory", 5.0)            # failed: retried, so left
    finally:
        store.close()
    a, b = run_status(tmp_path)
    # a: L2 B's shards 1 and 2 at 2 s per image (40 + 20 s); L2 BPDA's two left skip; L2 new has nothing to go by
    assert (a.left.seconds, a.left.estimated, a.left.unknown, a.left.not_applicable) == (60.0, 4, 3, 2)
    # b: L2 B at a's 2 s per image times 3 (b / a on L2 A) over 50 images; L2 BPDA and L2 new unknown
    assert b.left.seconds == pytest.approx(300.0) and (b.left.estimated, b.left.unknown) == (3, 6)
    text = status_text(tmp_path)
    assert ("left: about 60 s of attacks for 4 shard(s) at the pace of the finished ones (2 of them not "
            "applicable, like others of their kind; 3 more with nothing finished to go by)") in text
    assert ("left: about 5 min of attacks for 3 shard(s) at the pace of the finished ones (6 more with nothing "
            "finished to go by)") in text
    # a: everything finished but a new attack nobody has run: nothing to estimate it by, and said so
    store = Store(tmp_path / "results.sqlite")
    try:
        store.add_attacks([("L2 last", "L2", {"attack": "boundary", "params": {}})])
        for k in range(3):
            for attack in ("L2 B", "L2 BPDA", "L2 new"):
                if store.shard_status("a", attack, k) not in ("done", "skipped"):
                    store.finish_shard("a", attack, k, [], seconds=1.0)
    finally:
        store.close()
    lines = status_text(tmp_path).splitlines()
    assert lines.count("  left: 3 shard(s), nothing finished yet to estimate them by") == 1       # a's L2 last


def test_status_counts_the_attacks_outside_the_last_calls_only_apart(tmp_path):
    """A run split by norm (``--only 'L2 *'`` here, the L1 attacks in another process's run): the L1 attacks are
    neither 'to do' nor estimated, they are counted as another call's part; without --only they are left here."""
    store = Store(tmp_path / "results.sqlite")
    try:
        store.set_meta("config", {"n": 40, "batch_size": 20})
        store.set_meta("only", ["L2 *"])
        store.add_model("m", "m", "m", {}, None, np.zeros(40, dtype=np.int64), np.zeros(40, dtype=np.int64))
        store.add_attacks([("L2 A", "L2", {"attack": "pgd", "params": {}}),
                           ("L2 B", "L2", {"attack": "square", "params": {}}),
                           ("L1 A", "L1", {"attack": "pgd", "params": {}}),
                           ("L1 B", "L1", {"attack": "ead", "params": {}})])
        for k in range(2):
            store.finish_shard("m", "L2 A", k, [], seconds=20.0)          # 1 s per image
        store.finish_shard("m", "L2 B", 0, [], seconds=20.0)
        store.fail_shard("m", "L1 B", 0, "out of memory", 5.0)            # failed in the other part: not ours
    finally:
        store.close()
    (m,) = run_status(tmp_path)
    assert m.pending_attacks == ("L2 B",) and m.failed_attacks == ()
    assert (m.left.seconds, m.left.estimated, m.left.unknown) == (20.0, 1, 0)
    assert m.elsewhere_attacks == ("L1 A", "L1 B") and m.elsewhere_shards == 4 and m.only == ("L2 *",)
    text = status_text(tmp_path)
    assert "to do (1): L2 B" in text and "nothing finished to go by" not in text
    assert "not selected by the last call (--only 'L2 *'): 4 shard(s) of 2 attack(s)" in text
    store = Store(tmp_path / "results.sqlite")
    try:
        store.set_meta("only", [])                                        # a later call without --only
    finally:
        store.close()
    (m,) = run_status(tmp_path)
    assert m.elsewhere_attacks == () and m.pending_attacks == ("L2 B", "L1 A", "L1 B")
    assert m.failed_attacks == ("L1 B",) and m.left.unknown == 4
    assert "not selected" not in status_text(tmp_path)


def test_a_folder_of_runs_gets_the_status_of_each(tmp_path):
    """A preset in image ranges keeps one run per range (``RUN/images-<start>``): ``dim status RUN`` lists each, and a
    folder with no run in it is still the one clear error."""
    for start, done in ((0, 2), (200, 1)):
        store = Store(tmp_path / "en" / f"images-{start}" / "results.sqlite")
        try:
            store.set_meta("config", {"n": 200, "batch_size": 100})
            store.add_model("m", "m", "m", {}, None, np.zeros(200, dtype=np.int64), np.zeros(200, dtype=np.int64))
            store.add_attacks([("L2 A", "L2", {"attack": "pgd", "params": {}})])
            for k in range(done):
                store.finish_shard("m", "L2 A", k, [], seconds=10.0)
        finally:
            store.close()
    text = status_text(tmp_path / "en")
    first, second = text.split("\n\n")
    assert first.startswith(f"{tmp_path / 'en' / 'images-0'}:") and "m: 2/2 shards finished" in first
    assert second.startswith(f"{tmp_path / 'en' / 'images-200'}:") and "m: 1/2 shards finished" in second
    assert "left: about 10 s" in second
    from typer.testing import CliRunner

    from dim.cli import app
    r = CliRunner().invoke(app, ["status", str(tmp_path / "en")])
    assert r.exit_code == 0 and "images-200" in r.output
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(app, ["status", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "no results store" in r.output
