"""The results store: one SQLite database per run (``RUN_DIR/results.sqlite``, WAL mode).

One row per (model, attack, sample) with the smallest verified adversarial
distance (``inf`` when the attack failed on that sample, ``0`` when the clean
sample is already misclassified), the predicted label on that adversarial and
the seconds spent. A shard's rows and its ``done`` mark are written in one
transaction, so a run killed at any moment (SIGKILL included) holds either all of
a shard or none of it: resuming redoes exactly the unfinished shards, and no row
is lost or duplicated (the primary key forbids duplicates).
"""
from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import quote

import numpy as np

STORE_FILE = "results.sqlite"
REUSED = "reused/"   # meta key prefix: reused/<model>/<attack>/<shard> -> the run the shard was copied from

# Tables added after the first stores were written: a store opened read-only that lacks one shows it empty.
ADDED_TABLES = {"attempts": "(model TEXT NOT NULL, attack TEXT NOT NULL, shard INTEGER NOT NULL, attempt INTEGER NOT "
                            "NULL, error TEXT, seconds REAL, device TEXT, PRIMARY KEY (model, attack, shard, attempt))"}

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    model TEXT PRIMARY KEY, name TEXT NOT NULL, paper_name TEXT NOT NULL, card TEXT NOT NULL,
    card_sha256 TEXT, clean_accuracy REAL, identity TEXT);
CREATE TABLE IF NOT EXISTS attacks (attack TEXT PRIMARY KEY, norm TEXT NOT NULL, spec TEXT NOT NULL,
    position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    model TEXT NOT NULL, sample INTEGER NOT NULL, label INTEGER NOT NULL, clean_pred INTEGER NOT NULL,
    PRIMARY KEY (model, sample));
CREATE TABLE IF NOT EXISTS shards (
    model TEXT NOT NULL, attack TEXT NOT NULL, shard INTEGER NOT NULL, status TEXT NOT NULL,
    error TEXT, seconds REAL, device TEXT, PRIMARY KEY (model, attack, shard));
CREATE TABLE IF NOT EXISTS attempts {ADDED_TABLES['attempts']};
CREATE TABLE IF NOT EXISTS results (
    model TEXT NOT NULL, attack TEXT NOT NULL, sample INTEGER NOT NULL, distance REAL NOT NULL,
    pred INTEGER NOT NULL, seconds REAL NOT NULL, PRIMARY KEY (model, attack, sample));
"""


_SHARD_COLUMNS = "(model, attack, shard, status, error, seconds, device)"
TABLES = ("meta", "models", "attacks", "samples", "shards", "attempts", "results")
# Columns added after the first stores were written, as (table, column). A writable store gains them on
# opening; a store opened read-only shows them as NULL.
ADDED_COLUMNS = (("shards", "device"),     # the device that computed a shard (runs resumed elsewhere mix them)
                 ("models", "identity"))   # what was evaluated under the key


def _missing_columns(db: sqlite3.Connection) -> list[tuple[str, str]]:
    """The :data:`ADDED_COLUMNS` a store written by an earlier version lacks."""
    return [(t, c) for t, c in ADDED_COLUMNS if c not in {r[1] for r in db.execute(f"PRAGMA table_info({t})")}]


class StoreError(ValueError):
    """A results store that cannot be opened or written; the message names the file and the cause."""


@dataclass(frozen=True)
class ResultRow:
    model: str
    attack: str
    sample: int
    distance: float
    pred: int
    seconds: float


class Store:
    """Thin wrapper over the run's SQLite database."""

    def __init__(self, path: Path, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        run_dir = self.path.parent
        if run_dir.exists() and not run_dir.is_dir():
            raise StoreError(f"{run_dir}: is a file, not a run directory; give --run a directory")
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, not a results store")
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise StoreError(f"{self.path}: is empty (0 bytes), not a results store; it is not taken for a new run "
                             "(move it away to start one, or restore it)")
        try:
            if read_only:
                self.db = self._open_read_only()
            else:
                run_dir.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(SCHEMA)
                self._migrate()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open the results store ({exc.strerror or exc})") from None

    def _open_read_only(self) -> sqlite3.Connection:
        """Open for reading only, so that an archived run on read-only media (or one we may not write) can be
        read: nothing is created or changed, not even SQLite's WAL side files when they cannot be.

        SQLite opens a WAL database read-only only where its ``-shm`` file exists or can be created; in a
        read-only folder without one, the database is read as immutable, which is exact when no ``-wal`` file
        with uncheckpointed pages lies beside it (then the store is refused: its newest rows would be missed)."""
        if not self.path.is_file():
            raise StoreError(f"{self.path}: no results store")
        uri = f"file:{quote(str(self.path.resolve()))}"
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60, isolation_level=None)
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.is_file() and wal.stat().st_size > 0:
                raise StoreError(f"{self.path}: cannot be read in place: its folder is read-only and {wal.name} "
                                 "holds rows not yet merged into it; copy the run directory somewhere writable "
                                 "and read the copy") from None
            db = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()   # raises on a file that is not SQLite
        missing = [t for t in TABLES
                   if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (t,)).fetchone()]
        if set(missing) - set(ADDED_TABLES):
            db.close()
            raise StoreError(f"{self.path}: not a results store of dim (no table {', '.join(missing)})")
        for table in missing:     # added since this store was written: empty, in the temporary schema
            db.execute(f"CREATE TEMP TABLE {table} {ADDED_TABLES[table]}")
        # a store of an earlier version lacks columns added since; without writing to it, temporary views
        # (which SQLite resolves before the tables they shadow) show those columns as NULL, as a migration would
        missing_cols: dict[str, list[str]] = {}
        for table, column in _missing_columns(db):
            missing_cols.setdefault(table, []).append(column)
        for table, columns in missing_cols.items():
            extra = ", ".join(f"NULL AS {c}" for c in columns)
            db.execute(f"CREATE TEMP VIEW {table} AS SELECT *, {extra} FROM main.{table}")
        return db

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """One clear error naming the store and the cause, for a failure SQLite reports."""
        text = str(exc)
        if "disk is full" in text:
            return StoreError(f"{self.path}: cannot write the results store: the disk is full ({text}); nothing "
                              "half-written was kept: free space and rerun the same command to resume")
        if "readonly" in text or "read-only" in text:
            return StoreError(f"{self.path}: cannot write the results store: it or its folder is read-only "
                              f"({text}); 'dim status' and 'dim report --out ELSEWHERE' read such a run")
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError) \
                or "not a database" in text or "malformed" in text:
            return StoreError(f"{self.path}: not a readable results store ({text}); the file is damaged, truncated, "
                              "or not written by dim")
        if "unable to open" in text:
            return StoreError(f"{self.path}: cannot open the results store ({text}); is its folder missing or "
                              "read-only? 'dim status' and 'dim report --out ELSEWHERE' read a read-only run")
        return StoreError(f"{self.path}: results store error ({text})")

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction; SQLite's failures (disk full, read-only, damaged) become a StoreError."""
        if self.read_only:
            raise StoreError(f"{self.path}: opened read-only; cannot record anything in it")
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                yield
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _migrate(self) -> None:
        """Bring a store written by an earlier version up to this schema (columns added since)."""
        for table, column in _missing_columns(self.db):
            self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")

    @classmethod
    def of_run(cls, run_dir: Path | str, read_only: bool = False) -> "Store":
        """The store of an existing run directory; a clear error (and no new file) if it holds none.
        ``read_only`` for readers (status, report, reuse donors): they work on a run they may not write."""
        db = Path(run_dir) / STORE_FILE
        if not db.is_file():
            raise FileNotFoundError(f"{db}: no results store; run 'dim evaluate ... --run {run_dir}' first")
        return cls(db, read_only=read_only)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ meta
    def set_meta(self, key: str, value: Any) -> None:
        with self._write():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def meta_with_prefix(self, prefix: str) -> dict[str, Any]:
        """Every meta entry whose key starts with ``prefix`` (e.g. ``"reused/"``)."""
        return {k: json.loads(v) for k, v in self.db.execute(
            "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))}

    # ---------------------------------------------------------------- models
    def add_model(self, model: str, name: str, paper_name: str, card: dict, card_sha256: str | None,
                  labels: np.ndarray, clean_pred: np.ndarray, identity: str | None = None) -> None:
        acc = float((labels == clean_pred).mean()) if len(labels) else math.nan
        with self._write():
            self.db.execute("INSERT OR REPLACE INTO models (model, name, paper_name, card, card_sha256, "
                            "clean_accuracy, identity) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (model, name, paper_name, json.dumps(card, sort_keys=True), card_sha256, acc, identity))
            self.db.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?)",
                                [(model, i, int(l), int(p)) for i, (l, p) in enumerate(zip(labels, clean_pred))])

    def model_identity(self, model: str) -> tuple[str | None, str | None] | None:
        """``(identity, card_sha256)`` recorded for ``model``, or None if the run has not seen it."""
        row = self.db.execute("SELECT identity, card_sha256 FROM models WHERE model = ?", (model,)).fetchone()
        return (row[0], row[1]) if row else None

    def models(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT model, name, paper_name, card, card_sha256, clean_accuracy FROM models "
                               "ORDER BY rowid").fetchall()
        return [dict(model=r[0], name=r[1], paper_name=r[2], card=json.loads(r[3]), card_sha256=r[4],
                     clean_accuracy=r[5]) for r in rows]

    def samples(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.db.execute("SELECT label, clean_pred FROM samples WHERE model = ? ORDER BY sample",
                               (model,)).fetchall()
        arr = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    # --------------------------------------------------------------- attacks
    def add_attacks(self, specs: Iterable[tuple[str, str, dict]]) -> None:
        """Record attacks; one already recorded keeps its position, new ones go after the last."""
        with self._write():
            pos = self.db.execute("SELECT COALESCE(MAX(position), -1) FROM attacks").fetchone()[0]
            for name, norm, spec in specs:
                row = self.db.execute("SELECT position FROM attacks WHERE attack = ?", (name,)).fetchone()
                if row is None:
                    pos += 1
                self.db.execute("INSERT OR REPLACE INTO attacks VALUES (?, ?, ?, ?)",
                                (name, norm, json.dumps(spec, sort_keys=True), pos if row is None else row[0]))

    def attacks(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT attack, norm, spec FROM attacks ORDER BY position").fetchall()
        return [dict(attack=r[0], norm=r[1], spec=json.loads(r[2])) for r in rows]

    # ---------------------------------------------------------------- shards
    def shard_status(self, model: str, attack: str, shard: int) -> str | None:
        row = self.db.execute("SELECT status FROM shards WHERE model = ? AND attack = ? AND shard = ?",
                              (model, attack, shard)).fetchone()
        return row[0] if row else None

    def finish_shard(self, model: str, attack: str, shard: int, rows: list[ResultRow], seconds: float,
                     device: str | None = None) -> None:
        """Write a shard's rows and its done mark (with the device that computed it) atomically."""
        with self._write():
            self.db.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?)",
                                [(r.model, r.attack, r.sample, r.distance, r.pred, r.seconds) for r in rows])
            self.db.execute(f"INSERT OR REPLACE INTO shards {_SHARD_COLUMNS} VALUES (?, ?, ?, 'done', NULL, ?, ?)",
                            (model, attack, shard, seconds, device))

    def fail_shard(self, model: str, attack: str, shard: int, error: str, seconds: float,
                   status: str = "failed", device: str | None = None) -> None:
        """Mark a shard ``failed`` (the attack raised) or ``skipped`` (it does not apply), with why.

        A failed shard is retried by the next evaluation of the run; every failed attempt keeps
        its error in ``attempts``."""
        with self._write():
            if status == "failed":
                n = self.db.execute("SELECT COUNT(*) FROM attempts WHERE model = ? AND attack = ? AND shard = ?",
                                    (model, attack, shard)).fetchone()[0]
                self.db.execute("INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (model, attack, shard, n + 1, error[:2000], seconds, device))
            self.db.execute(f"INSERT OR REPLACE INTO shards {_SHARD_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (model, attack, shard, status, error[:2000], seconds, device))

    def reopen_shard(self, model: str, attack: str, shard: int, samples: Iterable[int], why: str) -> None:
        """Take a finished shard back to be computed again (its adversarials file is missing, damaged or not its
        own): its rows go, it is marked failed with ``why`` (kept among its attempts), and the next plan runs it."""
        samples = [int(s) for s in samples]
        with self._write():
            self.db.executemany("DELETE FROM results WHERE model = ? AND attack = ? AND sample = ?",
                                [(model, attack, s) for s in samples])
            self.db.execute("DELETE FROM meta WHERE key = ?", (f"{REUSED}{model}/{attack}/{shard}",))
            n = self.db.execute("SELECT COUNT(*) FROM attempts WHERE model = ? AND attack = ? AND shard = ?",
                                (model, attack, shard)).fetchone()[0]
            self.db.execute("INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (model, attack, shard, n + 1, f"reopened: {why}"[:2000], 0.0, None))
            self.db.execute(f"INSERT OR REPLACE INTO shards {_SHARD_COLUMNS} VALUES (?, ?, ?, 'failed', ?, 0, NULL)",
                            (model, attack, shard, f"reopened: {why}"[:2000]))

    def mark_reused(self, model: str, attack: str, shard: int, donor: str) -> None:
        """Record that a shard is (about to be) copied from the run ``donor``; counts once the shard is done."""
        self.set_meta(f"{REUSED}{model}/{attack}/{shard}", donor)

    def reused_shards(self) -> dict[tuple[str, str, int], str]:
        """(model, attack, shard) -> the run it was copied from, for the finished shards that were copied."""
        done = {(m, a, k) for m, a, k in self.db.execute(
            "SELECT model, attack, shard FROM shards WHERE status = 'done'")}
        out = {}
        for key, donor in self.meta_with_prefix(REUSED).items():
            model, attack, shard = key[len(REUSED):].rsplit("/", 2)
            if (model, attack, int(shard)) in done:
                out[(model, attack, int(shard))] = donor
        return out

    def shards(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT model, attack, shard, status, error, seconds, device FROM shards "
                               "ORDER BY model, attack, shard").fetchall()
        return [dict(model=r[0], attack=r[1], shard=r[2], status=r[3], error=r[4], seconds=r[5], device=r[6])
                for r in rows]

    def attempts(self, model: str, attack: str, shard: int) -> list[dict[str, Any]]:
        """Every failed attempt at a shard, oldest first."""
        return [dict(attempt=a, error=e, seconds=sec, device=d) for a, e, sec, d in self.db.execute(
            "SELECT attempt, error, seconds, device FROM attempts WHERE model = ? AND attack = ? AND shard = ? "
            "ORDER BY attempt", (model, attack, shard))]

    def failed_shards(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM shards WHERE status = 'failed'").fetchone()[0]

    def shard_device(self, model: str, attack: str, shard: int) -> str | None:
        row = self.db.execute("SELECT device FROM shards WHERE model = ? AND attack = ? AND shard = ?",
                              (model, attack, shard)).fetchone()
        return row[0] if row else None

    def shard_devices(self) -> dict[str, int]:
        """Finished shards per device that computed them (``None``: recorded before devices were)."""
        return {d: n for d, n in self.db.execute(
            "SELECT device, COUNT(*) FROM shards WHERE status = 'done' GROUP BY device ORDER BY device")}

    # --------------------------------------------------------------- results
    def distances(self, model: str, attack: str, n: int) -> np.ndarray:
        """Distances of one (model, attack) as an array of length ``n``; NaN where no row exists."""
        out = np.full(n, np.nan)
        for sample, dist in self.db.execute("SELECT sample, distance FROM results WHERE model = ? AND attack = ?",
                                            (model, attack)):
            if sample < n:
                out[sample] = dist
        return out

    def rows(self, model: str, attack: str) -> list[ResultRow]:
        """The result rows of one (model, attack), by sample."""
        return [ResultRow(*r) for r in self.db.execute(
            "SELECT model, attack, sample, distance, pred, seconds FROM results WHERE model = ? AND attack = ? "
            "ORDER BY sample", (model, attack))]

    def results(self) -> list[ResultRow]:
        return [ResultRow(*r) for r in self.db.execute(
            "SELECT model, attack, sample, distance, pred, seconds FROM results ORDER BY model, attack, sample")]

    def attack_seconds(self) -> dict[tuple[str, str], float]:
        return {(m, a): s for m, a, s in self.db.execute(
            "SELECT model, attack, SUM(seconds) FROM shards WHERE status = 'done' GROUP BY model, attack")}
