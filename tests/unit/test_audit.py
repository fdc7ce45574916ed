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
    con.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    con.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
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
    # The MAC, which needs the key, finds it at the edited entry itself; the next link breaks too.
    assert res.first_bad_seq == 2 and "MAC does not match" in (res.problem or "")
    con.execute("DROP TRIGGER IF EXISTS audit_mac_no_delete")
    con.execute("DELETE FROM audit_mac")  # as if written before MACs existed: the hash rule
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


# ---- the keyed MAC and signed checkpoints -----------------------------------------------------
def raw_all(state: StateStore) -> sqlite3.Connection:
    con = raw(state)
    con.execute("DROP TRIGGER IF EXISTS audit_mac_no_update")
    con.execute("DROP TRIGGER IF EXISTS audit_mac_no_delete")
    return con


def rehash_from(con: sqlite3.Connection, seq: int, **changes: str) -> None:
    """Edit entry ``seq`` and recompute every later hash and the head, as someone with the
    database but not the audit key could."""
    cols = ["seq", "at", "actor", "action", "subject", "reason", "evidence", "prev_hash", "hash"]
    rows = [
        dict(zip(cols, r, strict=True))
        for r in con.execute(f"SELECT {', '.join(cols)} FROM audit_log ORDER BY seq")
    ]
    prev = audit.GENESIS
    for r in rows:
        if r["seq"] == seq:
            r.update(changes)
        if r["seq"] >= seq:
            body = {**r, "evidence": __import__("json").loads(r["evidence"])}
            r["prev_hash"], r["hash"] = prev, audit.entry_hash(prev, body)
            con.execute(
                "UPDATE audit_log SET reason = ?, actor = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (r["reason"], r["actor"], r["prev_hash"], r["hash"], r["seq"]),
            )
        prev = r["hash"]
    con.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (rows[-1]["seq"], prev))
    con.commit()


def test_entries_carry_a_mac_keyed_by_a_secret_outside_the_database(state: StateStore) -> None:
    es = audit.entries(state)
    assert all(e.mac and len(e.mac) == 64 for e in es)
    key_file = state.secrets_dir / audit.KEY_FILE  # type: ignore[operator]
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.parent.stat().st_mode & 0o777 == 0o700
    import hashlib
    import hmac

    key = key_file.read_text().strip().encode()
    expected = hmac.new(key, f"{es[0].mac}\n{es[1].hash}".encode(), hashlib.sha256).hexdigest()
    assert es[1].mac == expected
    assert audit.GENESIS not in key_file.read_text()


def test_a_chain_rehashed_without_the_key_is_found_at_the_edited_seq(state: StateStore) -> None:
    rehash_from(raw_all(state), 3, reason="nothing happened here")
    res = audit.verify(state)
    assert not res.ok and res.first_bad_seq == 3
    assert "recomputed without the audit key" in (res.problem or "")


def test_a_chain_checked_with_another_key_fails(state: StateStore, tmp_path: Path) -> None:
    other = StateStore(state.url, secrets_dir=tmp_path / "other-secrets")
    res = audit.verify(other)
    assert not res.ok and res.first_bad_seq == 1 and "MAC" in (res.problem or "")


def test_a_truncated_tail_with_a_rewritten_head_is_found_by_the_checkpoint(
    state: StateStore,
) -> None:
    cp = audit.checkpoint(state)
    assert cp["seq"] == 6 and len(cp["signature"]) == 64
    con = raw_all(state)
    con.execute("DELETE FROM audit_log WHERE seq >= 5")
    con.execute("DELETE FROM audit_mac WHERE seq >= 5")
    h4 = con.execute("SELECT hash FROM audit_log WHERE seq = 4").fetchone()[0]
    con.execute("UPDATE audit_head SET seq = 4, hash = ? WHERE id = 1", (h4,))
    con.commit()
    res = audit.verify(state)
    assert not res.ok and res.first_bad_seq == 5
    assert "checkpoint" in (res.problem or "") and "records seq 6" in (res.problem or "")


def test_a_forged_checkpoint_is_refused(state: StateStore) -> None:
    audit.checkpoint(state)
    path = audit.checkpoint_path(state)
    import json

    cp = json.loads(path.read_text().splitlines()[-1])
    path.write_text(json.dumps({**cp, "seq": 2}) + "\n")
    res = audit.verify(state)
    assert not res.ok and "bad signature" in (res.problem or "")


def test_entries_written_before_macs_verify_by_the_hash_rule_and_are_reported(
    state: StateStore,
) -> None:
    con = raw_all(state)
    con.execute("DELETE FROM audit_mac")  # as an installation from before MACs existed
    con.commit()
    audit.record(state, "cli:ana", "registry.add", "v7")
    res = audit.verify(state)
    assert res.ok and res.legacy_entries == 6 and res.entries == 7
    assert any("before MACs existed" in n for n in res.notes)
    # Once one entry has a MAC, a later entry without one is a failure.
    audit.record(state, "cli:ana", "registry.add", "v8")
    con = raw_all(state)
    con.execute("DELETE FROM audit_mac WHERE seq = 8")
    con.commit()
    res = audit.verify(state)
    assert not res.ok and res.first_bad_seq == 8 and "no MAC" in (res.problem or "")
