"""Alembic's environment for the state store, configured from code (no alembic.ini).

:mod:`modelwarden.store.migrate` passes an open connection in ``config.attributes``; a developer
writing a new revision can instead point ``-x url=...`` at a scratch database::

    alembic -c /dev/null -x url=sqlite:///scratch.db revision --autogenerate -m "what changed"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from modelwarden.store.tables import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database: -x url=sqlite:///path/to/state.db")
    engine = create_engine(url)
    with engine.connect() as con:
        _migrate(con)
        con.commit()
    engine.dispose()


def _migrate(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,  # SQLite alters a table by copying it
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
