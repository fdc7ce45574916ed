"""The state store: registry, routes, rollouts, eval runs, reviews, incidents, audit log.

SQLAlchemy Core over SQLite by default (``sqlite:///DATA/state.db``, WAL mode) and PostgreSQL
when several instances share one state. Feature modules declare their tables on :data:`metadata`
and list their module in :data:`TABLE_MODULES`, so one ``create_all`` makes every table.
"""

from __future__ import annotations

import importlib
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


class StateStore:
    """A handle on the state database; cheap to create, one per process is enough."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, future=True)
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

    def close(self) -> None:
        self.engine.dispose()
