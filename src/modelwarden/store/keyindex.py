"""The key index of one directory of part files: which keys its Parquet files hold.

One small SQLite file per directory (a day partition, an embedder's vectors) under the log root's
``_index/`` folder, next to that directory's lock file. An append looks up only the keys of the
directories it writes to, so its cost depends on the size of those directories' B-trees
(logarithmically), not on the size of the store.

The Parquet files are the truth and the index is derived from them:

* a part file is written and fsync'd first, and only then are its keys and its name recorded, in
  one SQLite transaction;
* before each use the index is reconciled with the directory: keys of any Parquet file it does not
  list yet (a crash between the two steps, a file another tool wrote, a store from before the
  index existed) are added, and names of files that are gone are forgotten.

So the index can lack keys (the next reconciliation adds them) but can never hold a key whose rows
are not durably stored: a lost index transaction cannot lose a record. That is why the index
skips fsync (``synchronous=OFF``): a process crash loses nothing SQLite wrote, a power cut at worst
corrupts the index, which is then rebuilt from the Parquet files.

Callers hold the directory's lock (:meth:`modelwarden.store.logstore.LogStore.dir_lock`).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow.parquet as pq

log = logging.getLogger("modelwarden.store")

# SQLite's default limit on host parameters is 32766; stay well below it.
_CHUNK = 900


class KeyIndex:
    """An open index of one directory; use as a context manager, under the directory's lock."""

    def __init__(self, path: Path, key_column: str) -> None:
        self.path = path
        self.key_column = key_column
        self.con: sqlite3.Connection | None = None

    def __enter__(self) -> KeyIndex:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = self._open()
        except sqlite3.DatabaseError as exc:
            # Only a power cut while the index was written can do this: rebuild it.
            log.warning("the key index %s is unreadable (%s); rebuilding it", self.path, exc)
            for suffix in ("", "-journal"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            self.con = self._open()
        return self

    def _open(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, timeout=60)
        con.execute("PRAGMA journal_mode=TRUNCATE")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("CREATE TABLE IF NOT EXISTS keys (k TEXT PRIMARY KEY) WITHOUT ROWID")
        con.execute("CREATE TABLE IF NOT EXISTS files (name TEXT PRIMARY KEY) WITHOUT ROWID")
        return con

    def __exit__(self, *exc: object) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        assert self.con is not None, "the index is not open"
        self.con.execute("BEGIN IMMEDIATE")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # ---- reconciliation --------------------------------------------------------------------
    def indexed_files(self) -> set[str]:
        assert self.con is not None
        return {r[0] for r in self.con.execute("SELECT name FROM files")}

    def sync(self, directory: Path, names: Iterable[str]) -> int:
        """Make the index cover exactly the Parquet files ``names`` of ``directory``.

        Returns how many files had to be read (0 in the steady state).
        """
        present = set(names)
        indexed = self.indexed_files()
        missing = sorted(present - indexed)
        for name in missing:
            try:
                keys = pq.read_table(directory / name, columns=[self.key_column]).column(0)
            except FileNotFoundError:
                continue
            self.add(name, keys.to_pylist())
        gone = indexed - present
        if gone:
            with self._tx() as con:
                con.executemany("DELETE FROM files WHERE name = ?", [(n,) for n in gone])
        return len(missing)

    # ---- lookups and additions -------------------------------------------------------------
    def stored(self, keys: Sequence[str]) -> set[str]:
        """The subset of ``keys`` the directory already holds."""
        assert self.con is not None
        found: set[str] = set()
        unique = sorted(set(keys))
        for i in range(0, len(unique), _CHUNK):
            chunk = unique[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0] for r in self.con.execute(f"SELECT k FROM keys WHERE k IN ({marks})", chunk)
            )
        return found

    def add(self, name: str | None, keys: Iterable[str | None]) -> None:
        """Record ``keys`` and (when given) the file ``name`` that holds them, atomically."""
        rows = sorted({(k,) for k in keys if k is not None})
        with self._tx() as con:
            con.executemany("INSERT OR IGNORE INTO keys (k) VALUES (?)", rows)
            if name is not None:
                con.execute("INSERT OR IGNORE INTO files (name) VALUES (?)", (name,))

    def rename_files(self, added: str, removed: Iterable[str]) -> None:
        """After a compaction: ``added`` holds exactly the keys of ``removed``."""
        with self._tx() as con:
            con.execute("INSERT OR IGNORE INTO files (name) VALUES (?)", (added,))
            con.executemany("DELETE FROM files WHERE name = ?", [(n,) for n in removed])

    def count(self) -> int:
        assert self.con is not None
        return int(self.con.execute("SELECT count(*) FROM keys").fetchone()[0])
