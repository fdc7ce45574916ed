"""The state store: registry, routes, rollouts, eval runs, reviews, incidents, audit log.

SQLAlchemy Core over SQLite by default (``sqlite:///DATA/state.db``, WAL mode) or PostgreSQL
(``postgresql+psycopg://...``) when several instances share one state; ``Settings.state_url``
chooses. The tables are declared in :mod:`modelwarden.store.tables`; opening a store brings its
schema to the current revision (:mod:`modelwarden.store.migrate`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError

from modelwarden.errors import InputError, StateUnavailable

if TYPE_CHECKING:
    from modelwarden.settings import Settings


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


ENV_SECRETS = "MODELWARDEN_SECRETS"


def state_engine(url: str) -> Engine:
    """A SQLAlchemy engine for a state URL, set up for its database (SQLite or PostgreSQL)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InputError(
            "state_url is not a database URL (sqlite:///PATH or "
            "postgresql+psycopg://USER:PASSWORD@HOST/DB)",
            field="state_url",
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        # pre_ping: a connection the server dropped is replaced, not handed out.
        return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    raise InputError(
        f"state_url {parsed.render_as_string(hide_password=True)}: the state store runs on "
        "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB",
        field="state_url",
    )


def conflict_insert(dialect: str, table: Table) -> Any:
    """An INSERT that can say ``ON CONFLICT DO NOTHING / DO UPDATE``, for the dialect at hand.

    SQLite and PostgreSQL spell it the same way; SQLAlchemy has one construct per dialect.
    """
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def masked(engine: Engine) -> str:
    """The engine's URL with its password masked, for messages."""
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def reachable(engine: Engine) -> Iterator[None]:
    """Turn a failure to connect into :class:`StateUnavailable`, naming the (masked) URL."""
    try:
        yield
    except OperationalError as exc:
        if not exc.connection_invalidated and _is_connect_failure(exc):
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StateUnavailable(
                f"cannot reach the state database {masked(engine)}: {reason}", field="state_url"
            ) from exc
        raise


# What the database driver raises when the state database is down, restarting or unreachable
# (refused or dropped connections, a server shutting down, SQLite's lock timeout).
UNREACHABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


def unavailable(engine: Engine, exc: Exception) -> StateUnavailable:
    """A :class:`StateUnavailable` for a failure in :data:`UNREACHABLE`, naming the masked URL."""
    orig = getattr(exc, "orig", None)
    reason = str(orig or exc).strip().splitlines()[0] if str(orig or exc).strip() else "unreachable"
    return StateUnavailable(
        f"the state database {masked(engine)} is unavailable: {reason}", field="state_url"
    )


def _is_connect_failure(exc: OperationalError) -> bool:
    text = str(exc.orig or exc).lower()
    return any(
        s in text
        for s in (
            "connection",
            "connect",
            "could not translate host",
            "password authentication",
            "does not exist",
            "unable to open database",
        )
    )


class StateStore:
    """A handle on the state database; cheap to create, one per process is enough.

    Secrets that must not live in the database (the audit log's MAC key) are files in
    ``secrets_dir``: ``MODELWARDEN_SECRETS`` if set, else ``secrets/`` in the data directory
    (or beside a SQLite database opened by URL alone).
    """

    def __init__(self, url: str, secrets_dir: Path | None = None) -> None:
        self.url = url
        self.engine: Engine = state_engine(url)
        if os.environ.get(ENV_SECRETS):
            secrets_dir = Path(os.environ[ENV_SECRETS])
        if secrets_dir is None and url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
            secrets_dir = Path(url.removeprefix("sqlite:///")).parent / "secrets"
        self.secrets_dir = secrets_dir
        self._secrets: dict[str, bytes] = {}
        # The audit log finds its key from a connection's engine.
        self.engine.modelwarden_state = self  # type: ignore[attr-defined]
        # Imported here, not at the top: Alembic costs a third of a second that `--help` and the
        # commands that never open the state store should not pay.
        from modelwarden.store import migrate

        try:
            with reachable(self.engine):
                self.upgraded = migrate.ensure_current(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    @classmethod
    def of(cls, settings: Settings) -> StateStore:
        """The store that ``settings.state_url`` names."""
        return cls(settings.state_url, secrets_dir=settings.data_dir / "secrets")

    @classmethod
    def at(cls, data_dir: Path) -> StateStore:
        """A SQLite store in ``data_dir`` (``state.db``)."""
        return cls(f"sqlite:///{data_dir / 'state.db'}")

    @property
    def masked_url(self) -> str:
        """The URL with its password masked, for messages."""
        return masked(self.engine)

    def secret(self, name: str) -> bytes:
        """The secret kept in ``secrets_dir/name`` (0600 in a 0700 directory), made on first use."""
        if name in self._secrets:
            return self._secrets[name]
        if self.secrets_dir is None:
            raise InputError(
                f"no directory for secrets (the audit key): set {ENV_SECRETS} to a directory "
                "only this installation can read, the same on every instance",
                field=ENV_SECRETS,
            )
        self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.secrets_dir / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        value = path.read_text().strip().encode()
        if len(value) < 32:
            raise OSError(f"{path}: too short to be a secret (at least 32 characters)")
        self._secrets[name] = value
        return value

    def close(self) -> None:
        self.engine.dispose()
