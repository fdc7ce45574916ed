"""The state store: registry, routes, rollouts, eval runs, reviews, incidents, audit log.

SQLAlchemy Core over SQLite by default (``sqlite:///DATA/state.db``, WAL mode) and PostgreSQL
when several instances share one state. Feature modules declare their tables on :data:`metadata`
and list their module in :data:`TABLE_MODULES`, so one ``create_all`` makes every table.
"""

from __future__ import annotations

import importlib
import os
import secrets
import time
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

metadata = MetaData()

# Modules whose import declares tables on ``metadata``.
TABLE_MODULES: list[str] = [
    "modelwarden.governance.keys",
    "modelwarden.governance.sessions",
    "modelwarden.governance.routes",
    "modelwarden.evals.store",
    "modelwarden.review.queue",
    "modelwarden.governance.audit",
    "modelwarden.governance.registry",
    "modelwarden.rollout.store",
    "modelwarden.governance.incidents",
    "modelwarden.governance.notify",
    "modelwarden.drift.history",
]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


ENV_SECRETS = "MODELWARDEN_SECRETS"


class StateStore:
    """A handle on the state database; cheap to create, one per process is enough.

    Secrets that must not live in the database (the audit log's MAC key) are files in
    ``secrets_dir``: ``MODELWARDEN_SECRETS`` if set, else ``secrets/`` beside a SQLite database.
    """

    def __init__(self, url: str, secrets_dir: Path | None = None) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, future=True)
        if secrets_dir is None and os.environ.get(ENV_SECRETS):
            secrets_dir = Path(os.environ[ENV_SECRETS])
        if secrets_dir is None and url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
            secrets_dir = Path(url.removeprefix("sqlite:///")).parent / "secrets"
        self.secrets_dir = secrets_dir
        self._secrets: dict[str, bytes] = {}
        # The audit log finds its key from a connection's engine.
        self.engine.modelwarden_state = self  # type: ignore[attr-defined]
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        for name in TABLE_MODULES:
            importlib.import_module(name)
        self._create_tables()

    def _create_tables(self) -> None:
        # Two processes opening a new data directory at once both try to create the tables;
        # the loser sees "already exists" for a table the winner just made, and tries again.
        for attempt in range(5):
            try:
                metadata.create_all(self.engine)
                return
            except OperationalError as exc:
                if "already exists" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    @classmethod
    def at(cls, data_dir: Path) -> StateStore:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{data_dir / 'state.db'}")

    def secret(self, name: str) -> bytes:
        """The secret kept in ``secrets_dir/name`` (0600 in a 0700 directory), made on first use."""
        if name in self._secrets:
            return self._secrets[name]
        if self.secrets_dir is None:
            raise OSError(
                f"no directory for secrets: set {ENV_SECRETS} to a directory only this "
                "installation can read"
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
