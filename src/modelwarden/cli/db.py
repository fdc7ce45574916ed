"""``modelwarden db``: the state database's schema revision, and upgrading it.

Every command that opens the state store upgrades it first, so ``db upgrade`` is for doing it
on purpose: before starting several servers on one PostgreSQL database, or to see what changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from modelwarden.cli.app import (
    FORMAT_OPTION,
    Format,
    app,
    console,
    handle_errors,
    print_json,
    print_table,
    settings,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

db_app = typer.Typer(help="The state database: schema revision and upgrades.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@contextmanager
def _engine() -> Iterator[Engine]:
    # Imported lazily for `--help` speed (SQLAlchemy and Alembic).
    from modelwarden.store.state import reachable, state_engine

    engine = state_engine(settings().state_url)
    try:
        with reachable(engine):
            yield engine
    finally:
        engine.dispose()


@db_app.command("upgrade")
@handle_errors
def upgrade(
    revision: str = typer.Argument("head", help="Revision to upgrade to (default: the newest)."),
    format: Format = FORMAT_OPTION,
) -> None:
    """Bring the state database to the newest schema revision (safe to run again)."""
    from modelwarden.store import migrate

    with _engine() as engine:
        result = migrate.upgrade(engine, revision)
    if format == Format.json:
        print_json(result.to_dict())
    elif result.changed:
        console.print(f"{result.url}: upgraded from {result.before or 'empty'} to {result.after}")
    else:
        console.print(f"{result.url}: at {result.after} already")


@db_app.command("current")
@handle_errors
def current(format: Format = FORMAT_OPTION) -> None:
    """The schema revision the state database is at, and the newest this version knows."""
    from modelwarden.store import migrate

    with _engine() as engine:
        rev = migrate.current(engine)
        out: dict[str, object] = {"url": migrate.masked(engine), "current": rev}
    out["head"] = migrate.head()
    out["up_to_date"] = rev == out["head"]
    if format == Format.json:
        print_json(out)
    else:
        print_table([out], title="State database")


@db_app.command("history")
@handle_errors
def history(format: Format = FORMAT_OPTION) -> None:
    """Every schema revision, newest first; the database's own is marked."""
    from modelwarden.store import migrate

    with _engine() as engine:
        rows = [r.to_dict() for r in migrate.history(engine)]
    if format == Format.json:
        print_json(rows)
    else:
        print_table(rows, ["revision", "down_revision", "current", "head", "message"])
