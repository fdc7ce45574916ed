"""The state schema's version: bring a database to the current revision, say where it is.

The revisions live in ``store/migrations/versions/`` (Alembic, configured here from code). Every
process that opens the state store calls :func:`ensure_current`: one read of the version table
when the database is current already, an upgrade under a lock when it is not. The lock makes
concurrent starters wait for the first one: a file lock beside a SQLite database, a transaction
advisory lock on PostgreSQL.
"""

from __future__ import annotations

import fcntl
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from modelwarden.errors import StoreError

MIGRATIONS = Path(__file__).parent / "migrations"
# The PostgreSQL advisory lock that upgraders take: a fixed number derived from a fixed name.
LOCK_KEY = zlib.crc32(b"modelwarden.store.migrate")


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    message: str
    current: bool
    head: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Upgrade:
    url: str
    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "before": self.before,
            "after": self.after,
            "changed": self.changed,
        }


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    rev = scripts().get_current_head()
    assert rev is not None
    return rev


def current_in(con: Connection) -> str | None:
    return MigrationContext.configure(con).get_current_revision()


def current(engine: Engine) -> str | None:
    """The revision the database is at; None for a database that never had one."""
    with engine.connect() as con:
        return current_in(con)


def history(engine: Engine) -> list[Revision]:
    """Every revision, newest first, with the database's own marked."""
    now = current(engine)
    top = head()
    return [
        Revision(
            revision=s.revision,
            down_revision=s.down_revision if isinstance(s.down_revision, str) else None,
            message=(s.doc or "").strip().splitlines()[0] if s.doc else "",
            current=s.revision == now,
            head=s.revision == top,
        )
        for s in scripts().walk_revisions()
    ]


def masked(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _check_known(rev: str | None) -> None:
    if rev is not None and rev not in {s.revision for s in scripts().walk_revisions()}:
        raise StoreError(
            f"the state database is at schema revision {rev}, which this version of ModelWarden "
            f"does not know (its newest is {head()}): it was upgraded by a newer release; "
            "run that release or a newer one"
        )


def _sqlite_migration_engine(engine: Engine) -> Engine:
    """An engine whose transactions wrap DDL too, with foreign keys off while tables change.

    Python's sqlite3 commits before each DDL statement by default (one fsync per table), and a
    table rebuilt by a batch migration must not cascade deletes into the tables that refer to
    it; both are settled on this engine's connections, used only for migrating.
    """
    mig = create_engine(engine.url, poolclass=NullPool)

    @event.listens_for(mig, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=OFF"):
            dbapi_conn.execute(f"PRAGMA {pragma}")
        dbapi_conn.execute("PRAGMA busy_timeout=10000")

    @event.listens_for(mig, "begin")
    def _begin(con: Connection) -> None:
        con.exec_driver_sql("BEGIN IMMEDIATE")

    return mig


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    if engine.dialect.name != "sqlite":
        with engine.begin() as con:
            con.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
            yield con
        return
    mig = _sqlite_migration_engine(engine)
    try:
        with _file_lock(engine), mig.begin() as con:
            yield con
    finally:
        mig.dispose()


def upgrade(engine: Engine, target: str = "head") -> Upgrade:
    """Bring the database to ``target`` (the newest revision by default), once, under a lock."""
    with _migration_connection(engine) as con:
        before = current_in(con)
        _check_known(before)
        try:
            command.upgrade(alembic_config(con), target)
        except CommandError as exc:
            raise StoreError(f"cannot upgrade the state database: {exc}") from exc
        after = current_in(con)
    assert after is not None
    return Upgrade(masked(engine), before, after)


def ensure_current(engine: Engine) -> Upgrade | None:
    """Upgrade the database if it is behind; None (after one query) when it is current."""
    with engine.connect() as con:
        rev = current_in(con)
    if rev == head():
        return None
    _check_known(rev)
    done = upgrade(engine)
    return done if done.changed else None  # another process upgraded it while this one waited
