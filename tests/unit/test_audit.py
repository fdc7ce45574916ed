"""The audit log: the chain verifies, and every kind of tampering is found at the right seq."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DatabaseError

from modelwarden.governance import audit
from modelwarden.store.state import StateStore


@pytest.fixture
def state(state_url: str) -> StateStore:
    st = StateStore(state_url)
    for i in range(1, 7):
        audit.record(
            st,
            "cli:ana",
            "registry.transition",
            f"v{i}",
            f"reason {i}",
            {"from": "staging", "to": "shadow", "n": i, "p": 0.01 * i, "ünï": "cödé"},
        )
    return st


class Raw:
    """The database as someone with direct access would open it, the append-only triggers gone."""

    def __init__(self, state: StateStore) -> None:
        self.engine = create_engine(state.url)
        on = "" if self.engine.dialect.name == "sqlite" else " ON audit_log"
        with self.engine.begin() as con:
            for what in ("update", "delete"):
                con.exec_driver_sql(f"DROP TRIGGER audit_log_no_{what}{on}")

    def execute(self, sql: str, **params: Any) -> None:
        with self.engine.begin() as con:
            if params:
                con.execute(text(sql), params)
            else:
                con.exec_driver_sql(sql)
        self.engine.dispose()


def raw(state: StateStore) -> Raw:
    return Raw(state)


def test_chain_verifies_and_links_each_entry_to_the_previous(state: StateStore) -> None:
    res = audit.verify(state)
    assert res.ok and res.entries == 6 and res.head_seq == 6
    es = audit.entries(state)
    assert [e.seq for e in es] == [1, 2, 3, 4, 5, 6]
    assert es[0].prev_hash == audit.GENESIS
    for a, b in itertools.pairwise(es):
        assert b.prev_hash == a.hash
    # The documented formula, written out again.
    import hashlib
    import json

    e = es[2]
    body = {
        "seq": e.seq,
        "at": e.at,
        "actor": e.actor,
        "action": e.action,
        "subject": e.subject,
        "reason": e.reason,
        "evidence": e.evidence,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256((e.prev_hash + text).encode()).hexdigest() == e.hash
    assert res.head_hash == es[-1].hash


def test_updates_and_deletes_are_refused_by_the_database(state: StateStore) -> None:
    with pytest.raises(DatabaseError, match="append-only"), state.engine.begin() as con:
        con.exec_driver_sql("UPDATE audit_log SET reason = 'x' WHERE seq = 2")
    with pytest.raises(DatabaseError, match="append-only"), state.engine.begin() as con:
        con.exec_driver_sql("DELETE FROM audit_log WHERE seq = 2")
    assert audit.verify(state).ok


def test_an_edited_entry_is_found_at_its_seq(state: StateStore) -> None:
    con = raw(state)
    con.execute("UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 4")
    res = audit.verify(state)
    assert not res.ok and res.first_bad_seq == 4 and "content" in (res.problem or "")


def test_edited_evidence_is_found(state: StateStore) -> None:
    con = raw(state)
    con.execute("""UPDATE audit_log SET evidence = replace(evidence, '"n":3', '"n":30')
                   WHERE seq = 3""")
    assert audit.verify(state).first_bad_seq == 3


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(state: StateStore) -> None:
    e = audit.entries(state)[1]
    forged = {**e.to_dict(), "reason": "forged"}
    con = raw(state)
    con.execute(
        "UPDATE audit_log SET reason = :reason, hash = :hash WHERE seq = 2",
        reason="forged",
        hash=audit.entry_hash(e.prev_hash, forged),
    )
    res = audit.verify(state)
    assert res.first_bad_seq == 3 and "prev_hash" in (res.problem or "")


def test_a_deleted_entry_is_named(state: StateStore) -> None:
    con = raw(state)
    con.execute("DELETE FROM audit_log WHERE seq = 5")
    res = audit.verify(state)
    assert res.first_bad_seq == 5 and "missing" in (res.problem or "")


def test_a_truncated_log_is_found_through_the_head(state: StateStore) -> None:
    con = raw(state)
    con.execute("DELETE FROM audit_log WHERE seq >= 5")
    res = audit.verify(state)
    assert not res.ok and res.first_bad_seq == 5 and "removed from the end" in (res.problem or "")


def test_concurrent_writers_keep_one_chain(state_url: str) -> None:
    StateStore(state_url).close()
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        st = StateStore(state_url)  # its own engine, as another process would have
        try:
            for i in range(15):
                audit.record(st, f"writer-{w}", "test", f"s{w}", str(i), {"i": i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            st.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    st = StateStore(state_url)
    res = audit.verify(st)
    assert res.ok and res.entries == 60
    assert [e.seq for e in audit.entries(st)] == list(range(1, 61))
