"""The state store on PostgreSQL: migrations from an empty database, one upgrader at a time, and a
server that cannot be reached named with its password masked. UTC datetimes on both databases."""

from __future__ import annotations

import json
import multiprocessing
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import insert, select

from modelwarden.errors import StateUnavailable
from modelwarden.store import migrate
from modelwarden.store.state import StateStore
from modelwarden.store.tables import api_keys, metadata

pytestmark = pytest.mark.postgres


@pytest.fixture
def empty_pg(pg_server: Any) -> Iterator[str]:
    """An empty PostgreSQL database (no tables, no schema version)."""
    name = f"e_{uuid.uuid4().hex[:16]}"
    with DatabaseJanitor(
        user="warden",
        host="127.0.0.1",
        port=pg_server.port,
        dbname=name,
        template_dbname="template0",
    ):
        yield pg_server.url(name)


def test_db_upgrade_builds_the_schema_on_an_empty_database(empty_pg: str, run_cli: Any) -> None:
    res = run_cli("db", "current", "--format", "json", state_url=empty_pg)
    assert res.code == 0, res.err
    assert json.loads(res.out)["current"] is None
    res = run_cli("db", "upgrade", "--format", "json", state_url=empty_pg)
    assert res.code == 0, res.err
    assert json.loads(res.out)["after"] == migrate.head()
    res = run_cli("keys", "create", "--role", "operator", "--format", "json", state_url=empty_pg)
    assert res.code == 0, res.err
    key = json.loads(res.out)["key"]
    res = run_cli(
        "registry",
        "add",
        "v1",
        "--endpoint",
        "http://127.0.0.1:9101",
        "--key",
        key,
        state_url=empty_pg,
    )
    assert res.code == 0, res.err
    state = StateStore(empty_pg)
    assert state.upgraded is None
    with state.engine.connect() as con:
        assert compare_metadata(MigrationContext.configure(con), metadata) == []
    state.close()


def _open(url: str) -> str | None:
    st = StateStore(url)
    up = st.upgraded
    st.close()
    return up.before if up is not None else "current"


def test_concurrent_openers_upgrade_once(empty_pg: str) -> None:
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(_open, [empty_pg] * 3)
    assert sorted(results, key=str) == sorted([None, "current", "current"], key=str)


def test_an_unreachable_server_is_named_with_its_password_masked(run_cli: Any) -> None:
    url = "postgresql+psycopg://warden:s3cret-pw@127.0.0.1:9/warden"
    with pytest.raises(StateUnavailable) as err:
        StateStore(url)
    assert "postgresql+psycopg://warden:***@127.0.0.1:9/warden" in err.value.message
    assert "s3cret-pw" not in err.value.message
    for args in (("db", "upgrade"), ("registry", "list")):
        res = run_cli(*args, state_url=url)
        assert res.code == 2, (args, res.out, res.err)
        text = " ".join((res.out + res.err).split())
        assert "cannot reach the state database" in text
        assert "warden:***@127.0.0.1:9/warden" in text.replace(" ", "")
        assert "s3cret-pw" not in res.out + res.err
        assert "Traceback" not in res.err


@pytest.mark.parametrize("state_url", ["sqlite", "postgresql"], indirect=True)
def test_datetimes_come_back_as_aware_utc(state_url: str) -> None:
    state = StateStore(state_url)
    india = timezone(timedelta(hours=5, minutes=30))
    at = datetime(2026, 11, 2, 15, 0, tzinfo=india)
    with state.engine.begin() as con:
        con.execute(
            insert(api_keys).values(
                role="admin", key_hash="h" * 64, prefix="mw_x", created_at=at, revoked_at=None
            )
        )
        got = con.execute(select(api_keys.c.created_at)).scalar_one()
        # A naive datetime is taken as UTC; comparisons happen in UTC on both databases.
        later = con.execute(
            select(api_keys.c.id).where(api_keys.c.created_at < datetime(2026, 11, 2, 9, 31))
        ).all()
    assert got == at and got.tzinfo == UTC and got.hour == 9
    assert len(later) == 1
    state.close()
