"""The state schema's migrations: a data directory from release 0.1.0 upgrades with every row kept,
the revisions build exactly the declared tables, and concurrent openers upgrade once."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from modelwarden.errors import StoreError
from modelwarden.governance import audit, incidents, keys, notify, registry
from modelwarden.review import service as review_service
from modelwarden.review.rubrics import DEFAULT_RUBRIC
from modelwarden.rollout import store as rollouts
from modelwarden.store import migrate
from modelwarden.store.state import StateStore
from modelwarden.store.tables import metadata

DUMP = Path(__file__).parent.parent / "data" / "state_0_1_0.sql"
T0 = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)


def previous_release(data: Path) -> dict[str, int]:
    """A data directory as release 0.1.0 left it (no schema version); row counts per table."""
    data.mkdir(parents=True)
    con = sqlite3.connect(data / "state.db")
    con.executescript(DUMP.read_text(encoding="utf-8"))
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    con.close()
    assert "alembic_version" not in counts
    return counts


def test_a_previous_release_data_dir_upgrades_and_keeps_every_row(tmp_path: Path) -> None:
    data = tmp_path / "data"
    before = previous_release(data)
    assert sum(1 for n in before.values() if n) >= 10  # rows in many tables, not one

    state = StateStore.at(data)
    assert state.upgraded is not None and state.upgraded.before is None
    assert migrate.current(state.engine) == migrate.head()
    con = sqlite3.connect(data / "state.db")
    for table, n in before.items():
        assert con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == n, table
    con.close()

    # The old rows read back through today's code, datetimes as aware UTC.
    versions = {v.version: v for v in registry.list_versions(state)}
    assert versions["v1"].status == "stable" and versions["v2"].status == "staging"
    assert versions["v1"].created_at.tzinfo == UTC
    assert [k.name for k in keys.list_keys(state)] == ["ops", "plant-a"]
    inc = incidents.get(state, "INC-20250303-093000-abcd")
    assert inc.detected_at == T0 and inc.steps["reroute"]["done_at"] == T0
    assert inc.trigger == {"value": 0.02}
    r = rollouts.get(state, 1)
    assert (r.status, r.plan, r.ended_at) == ("rolled_back", {"steps": [5, 25, 100]}, T0)
    sent = notify.of_incident(state, inc.id)
    assert [(n["status"], n["sent_at"]) for n in sent] == [("sent", T0)]
    check = audit.verify(state)
    assert check.ok and check.entries == before["audit_log"]

    # And the upgraded schema takes new rows: the chain goes on, keys and versions are added.
    audit.record(state, "cli:test", "note", "v2", "after the upgrade")
    # The release's data holds an admin key, so a key above ingest would need its secret.
    _, key = keys.create_key(state, "ingest", name="line-3")
    assert key.id == 3
    registry.add(state, "v3", "http://127.0.0.1:9103", "cli:test")
    # The note, the key's creation and the new version: three more entries, all chained.
    assert audit.verify(state).ok and audit.verify(state).entries == before["audit_log"] + 3
    # The append-only triggers of the old release are still there.
    with pytest.raises(Exception, match="append-only"), state.engine.begin() as c:
        c.execute(text("DELETE FROM audit_log"))
    # A second open finds it current and does nothing.
    assert StateStore.at(data).upgraded is None


def test_db_upgrade_command_on_a_previous_release(tmp_path: Path, run_cli: Any) -> None:
    data = tmp_path / "data"
    previous_release(data)
    res = run_cli("db", "current", "--format", "json", data=data)
    assert res.code == 0, res.err
    assert json.loads(res.out)["current"] is None
    res = run_cli("db", "upgrade", "--format", "json", data=data)
    assert res.code == 0, res.err
    assert json.loads(res.out) == {
        "url": f"sqlite:///{data / 'state.db'}",
        "before": None,
        "after": migrate.head(),
        "changed": True,
    }
    res = run_cli("db", "upgrade", "--format", "json", data=data)
    assert json.loads(res.out)["changed"] is False
    res = run_cli("db", "history", "--format", "json", data=data)
    rows = json.loads(res.out)
    assert rows[0]["revision"] == migrate.head() and rows[0]["current"] and rows[0]["head"]
    assert rows[-1]["down_revision"] is None
    res = run_cli("registry", "list", "--format", "json", data=data)
    assert res.code == 0, res.err
    assert {v["version"] for v in json.loads(res.out)} == {"v1", "v2"}


def test_the_revisions_build_exactly_the_declared_tables(tmp_path: Path) -> None:
    state = StateStore.at(tmp_path / "data")
    with state.engine.connect() as con:
        diffs = compare_metadata(MigrationContext.configure(con), metadata)
    assert diffs == []
    names = set(inspect(state.engine).get_table_names())
    assert names == set(metadata.tables) | {"alembic_version"}


def test_the_first_revision_is_the_previous_release_schema(tmp_path: Path) -> None:
    old = tmp_path / "old"
    previous_release(old)
    new = tmp_path / "new"
    StateStore.at(new).close()
    # Tables added after release 0.1.0, by later revisions.
    later = {
        "console_sessions",
        "ix_console_sessions_key_id",
        "api_key_budgets",
        "audit_mac",
        "audit_mac_no_delete",
        "audit_mac_no_update",
        "report_sends",
        "leases",
        "policies",
    }
    # Columns added after release 0.1.0 (SQLite appends them to the table's statement).
    later_columns = {"review_queues": ", owner_key_id INTEGER"}

    def schema(db: Path) -> dict[str, str]:
        con = sqlite3.connect(db)
        rows = con.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name NOT IN ('alembic_version') AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
        con.close()
        # Column and constraint order may differ; compare the set of lines of each statement.
        return {
            n: sorted(
                x.strip().rstrip(",") for x in s.replace(later_columns.get(n, "\0"), "").split("\n")
            )
            for n, s in rows
        }

    fresh = schema(new / "state.db")
    assert set(fresh) - set(schema(old / "state.db")) == later
    assert schema(old / "state.db") == {n: s for n, s in fresh.items() if n not in later}


def test_a_revision_0006_database_upgrades_keeping_its_review_queues(tmp_path: Path) -> None:
    """Queues made before queues had owners keep every row and get no owner: admin keys only."""
    data = tmp_path / "data"
    data.mkdir()
    engine = create_engine(f"sqlite:///{data / 'state.db'}")
    migrate.upgrade(engine, "0006")
    with engine.begin() as con:
        assert "owner_key_id" not in {c["name"] for c in inspect(con).get_columns("review_queues")}
        con.execute(
            text(
                "INSERT INTO review_queues (name, rubric, reviewers_per_item, lease_minutes, "
                "params, created_at) VALUES ('old', :rubric, 2, 60.0, '{}', :at)"
            ),
            {"rubric": json.dumps(DEFAULT_RUBRIC.model_dump(mode="json")), "at": T0},
        )
        con.execute(
            text(
                "INSERT INTO review_items (id, queue, kind, position, source, source_ref, prompt, "
                "response, meta, created_at) VALUES ('rv1', 'old', 'single', 0, 'logs', 'r1', "
                "'What PPE?', 'Gloves.', '{}', :at)"
            ),
            {"at": T0},
        )
    engine.dispose()

    state = StateStore.at(data)
    assert state.upgraded is not None and state.upgraded.before == "0006"
    assert migrate.current(state.engine) == migrate.head()
    [queue] = review_service.queues(state)
    assert (queue["name"], queue["reviewers_per_item"], queue["owner_key_id"]) == ("old", 2, None)
    assert queue["created_at"] == T0
    assert review_service.status(state, "old")["items"]["single"] == 1
    # No owner: an admin key sees its progress, any other key is refused.
    _, admin = keys.create_key(state, "admin", name="root")
    assert review_service.may_see_progress(queue, admin)
    operator = dataclasses.replace(admin, id=admin.id + 1, role="operator")
    with pytest.raises(review_service.NotQueueOwner, match="has no owner"):
        review_service.agreement(state, "old", caller=operator)
    state.close()


def test_a_database_from_a_newer_release_is_refused_clearly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    StateStore.at(data).close()
    con = sqlite3.connect(data / "state.db")
    con.execute("UPDATE alembic_version SET version_num = 'ffff'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=r"revision ffff.*newer release"):
        StateStore.at(data)


def _open(url: str) -> str | None:
    st = StateStore(url)
    up = st.upgraded
    st.close()
    return up.before if up is not None else "current"


def test_concurrent_openers_of_a_new_database_upgrade_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'state.db'}"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_open, [url] * 4)
    # Exactly one opener upgraded from empty; the others found the database current.
    assert sorted(results, key=str) == sorted([None, "current", "current", "current"], key=str)
    assert StateStore(url).upgraded is None
