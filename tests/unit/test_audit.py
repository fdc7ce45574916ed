"""The audit log: the chain verifies, and every kind of tampering is found at the right seq."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy.exc import DatabaseError

from modelwarden.governance import audit
from modelwarden.store.state import StateStore


@pytest.fixture
def state(tmp_path: Path) -> StateStore:
    st = StateStore.at(tmp_path / "data")
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


def raw(state: StateStore) -> sqlite3.Connection:
    """The database as someone with file access would open it, triggers removed."""
    con = sqlite3.connect(state.url.removeprefix("sqlite:///"))
    con.execute("DROP TRIGGER audit_log_no_update")
    con.execute("DROP TRIGGER audit_log_no_delete")
    return con


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
    con.commit()
    res = audit.verify(state)
    assert not res.ok and res.first_bad_seq == 4 and "content" in (res.problem or "")


def test_edited_evidence_is_found(state: StateStore) -> None:
    con = raw(state)
    con.execute("""UPDATE audit_log SET evidence = replace(evidence, '"n":3', '"n":30')
                   WHERE seq = 3""")
    con.commit()
    assert audit.verify(state).first_bad_seq == 3


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(state: StateStore) -> None:
    e = audit.entries(state)[1]
    forged = {**e.to_dict(), "reason": "forged"}
    con = raw(state)
    con.execute(
        "UPDATE audit_log SET reason = ?, hash = ? WHERE seq = 2",
        ("forged", audit.entry_hash(e.prev_hash, forged)),
    )
    con.commit()
    res = audit.verify(state)
    assert res.first_bad_seq == 3 and "prev_hash" in (res.problem or "")


def test_a_deleted_entry_is_named(state: StateStore) -> None:
    con = raw(state)
    con.execute("DELETE FROM audit_log WHERE seq = 5")
    con.commit()
    res = audit.verify(state)
    assert res.first_bad_seq == 5 and "missing" in (res.problem or "")


def test_a_truncated_log_is_found_through_the_head(state: StateStore) -> None:
    con = raw(state)
    con.execute("DELETE FROM audit_log WHERE seq >= 5")
    con.commit()
    res = audit.verify(state)
    assert not res.ok and res.first_bad_seq == 5 and "removed from the end" in (res.problem or "")


def test_concurrent_writers_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "data"
    StateStore.at(path).close()
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        st = StateStore.at(path)  # its own engine, as another process would have
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
    st = StateStore.at(path)
    res = audit.verify(st)
    assert res.ok and res.entries == 60
    assert [e.seq for e in audit.entries(st)] == list(range(1, 61))
