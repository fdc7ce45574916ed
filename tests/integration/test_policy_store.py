"""The SOP policy in force is stored in the state store, so that every instance on one database
enforces the same one; the data directory's policy.yaml is the fallback while none is stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from modelwarden.errors import InputError
from modelwarden.governance import audit, notify
from modelwarden.governance.policies import set_policy
from modelwarden.policy import service as policy_service
from modelwarden.policy.spec import default_policy, policy_path
from modelwarden.rollout.service import rollout_view
from modelwarden.settings import Settings
from modelwarden.store import migrate
from modelwarden.store.state import StateStore


def _write(path: Path, sop_id: str, threshold: float = 0.01) -> Path:
    pol = default_policy()
    rules = [
        r.model_copy(update={"threshold": threshold}) if i == 0 else r
        for i, r in enumerate(pol.rules)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(pol.model_copy(update={"sop_id": sop_id, "rules": rules}).to_yaml(), "utf-8")
    return path


def test_two_instances_on_one_state_enforce_the_stored_policy(
    state_url: str, tmp_path: Path
) -> None:
    a = Settings(data_dir=tmp_path / "a", state_url=state_url)
    b = Settings(data_dir=tmp_path / "b", state_url=state_url)
    _write(policy_path(a.data_dir), "SOP-A")
    _write(policy_path(b.data_dir), "SOP-B")
    state = StateStore(state_url)
    try:
        # Nothing stored: each falls back to its own file (the old, per-instance behaviour).
        assert policy_service.load_policy(a, state=state).sop_id == "SOP-A"
        assert policy_service.current(b, state)["source"] == str(policy_path(b.data_dir))
        assert policy_service.current(b, state)["version"] is None

        cur, new = set_policy(a, state, "alice", reason="one policy for the site")
        assert new and cur.version == 1 and cur.policy.sop_id == "SOP-A"
        assert cur.source == str(policy_path(a.data_dir))
        for s in (a, b):
            assert policy_service.load_policy(s, state=state).sop_id == "SOP-A"
            assert rollout_view(s, state)["sop_id"] == "SOP-A"
            view = policy_service.current(s, state)
            assert view["source"] == "state store (version 1)"
            assert view["version"]["set_by"] == "alice"
        assert "SOP-A" in policy_service.sop_markdown(b, state=state)
        # A file named explicitly is still used as it is (checks and replays of a draft).
        explicit = policy_path(b.data_dir)
        assert policy_service.load_policy(b, explicit, state).sop_id == "SOP-B"

        again, new = set_policy(b, state, "bob", path=_write(tmp_path / "same.yaml", "SOP-A"))
        assert not new and again.version == 1  # equal to the one in force: nothing stored

        cur, new = set_policy(b, state, "bob", path=_write(tmp_path / "c.yaml", "SOP-C", 0.02))
        assert new and cur.version == 2
        assert policy_service.load_policy(a, state=state).rules[0].threshold == 0.02
        assert [v.version for v in policy_service.versions(state)] == [2, 1]
        sets = [e for e in audit.entries(state) if e.action == "policy.set"]
        assert [(e.actor, e.subject) for e in sets] == [("alice", "SOP-A"), ("bob", "SOP-C")]
        assert sets[1].evidence["previous_version"] == 1
        assert audit.verify(state).ok
    finally:
        state.close()


def test_set_without_a_file_imports_the_data_dir_file_or_the_built_in(
    state_url: str, tmp_path: Path
) -> None:
    s = Settings(data_dir=tmp_path / "empty", state_url=state_url)
    state = StateStore(state_url)
    try:
        cur, new = set_policy(s, state, "alice")
        assert new and cur.source == "built-in" and cur.policy == default_policy()
        with pytest.raises(InputError) as err:
            set_policy(s, state, "alice", text="rules: [{id: x}]")
        assert err.value.field is not None and err.value.field.startswith("rules")
        assert policy_service.stored(state) == cur  # a bad policy stores nothing
    finally:
        state.close()


def test_notify_set_changes_the_stored_policy_not_the_file(state_url: str, tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "a", state_url=state_url)
    file = _write(policy_path(s.data_dir), "SOP-A")
    before = file.read_text("utf-8")
    state = StateStore(state_url)
    try:
        set_policy(s, state, "alice")
        notify.configure(s, state, {"webhook_url": "http://127.0.0.1:9/hook"}, "alice")
        cur = policy_service.stored(state)
        assert cur is not None and cur.version == 2 and cur.policy.sop_id == "SOP-A"
        assert cur.policy.notify.webhook_url == "http://127.0.0.1:9/hook"
        assert file.read_text("utf-8") == before
        last = [e for e in audit.entries(state) if e.action == "policy.notify"][-1]
        assert last.evidence["version"] == 2
    finally:
        state.close()


def test_policy_set_and_show_commands(state_url: str, tmp_path: Path, run_cli: Any) -> None:
    draft = _write(tmp_path / "site.yaml", "SOP-SITE")
    res = run_cli(
        "policy",
        "set",
        str(draft),
        "--reason",
        "site policy",
        "--format",
        "json",
        data=tmp_path / "a",
        state_url=state_url,
    )
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["version"] == 1 and out["changed"] and out["sop_id"] == "SOP-SITE"
    res = run_cli("policy", "show", "--format", "json", data=tmp_path / "b", state_url=state_url)
    assert res.code == 0, res.err
    assert json.loads(res.out)["sop_id"] == "SOP-SITE"
    res = run_cli("policy", "set", str(draft), data=tmp_path / "b", state_url=state_url)
    assert res.code == 0 and "already in force" in res.out
    res = run_cli(
        "policy", "set", str(tmp_path / "missing.yaml"), data=tmp_path / "b", state_url=state_url
    )
    assert res.code == 2 and "missing.yaml" in res.err


def test_migrations_add_the_lease_generation_and_the_policies_table(
    state_url: str, tmp_path: Path
) -> None:
    """A database at revision 0007 (leases without a generation, no policies) upgrades with its
    lease row kept at generation 0, and downgrades back."""
    if state_url.startswith("sqlite:///"):
        Path(state_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(state_url)
    try:
        migrate.upgrade(engine, "0007")
        with engine.begin() as con:  # the PostgreSQL test database starts at the newest revision
            command.downgrade(migrate.alembic_config(con), "0007")
        with engine.begin() as con:
            con.execute(
                text(
                    "INSERT INTO leases (name, holder, acquired_at, expires_at) "
                    "VALUES ('controller', 'old', '2026-01-01 00:00:00', '2026-01-01 00:00:06')"
                )
            )
        assert "policies" not in inspect(engine).get_table_names()
        done = migrate.upgrade(engine)
        assert (done.before, done.after) == ("0007", migrate.head())
        with engine.connect() as con:
            row = con.execute(text("SELECT holder, generation FROM leases")).one()
        assert (row.holder, row.generation) == ("old", 0)
        assert "policies" in inspect(engine).get_table_names()
        with engine.begin() as con:
            command.downgrade(migrate.alembic_config(con), "0007")
        assert "policies" not in inspect(engine).get_table_names()
        assert "generation" not in {c["name"] for c in inspect(engine).get_columns("leases")}
    finally:
        engine.dispose()
