"""The controller lease: one holder at a time, renewed by its holder, taken over once expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelwarden.governance import audit
from modelwarden.governance.lease import Lease, holder_of
from modelwarden.store.state import StateStore

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_one_holder_renews_and_another_takes_over_after_expiry(state_url: str) -> None:
    state = StateStore(state_url)
    now = [T0]
    a = Lease(state, holder="a", ttl_s=6, clock=lambda: now[0])
    b = Lease(state, holder="b", ttl_s=6, clock=lambda: now[0])
    try:
        assert a.acquire() and not b.acquire()
        now[0] = T0 + timedelta(seconds=5)
        assert a.acquire() and not b.acquire()  # renewed: good until 0:11
        now[0] = T0 + timedelta(seconds=10)
        assert not b.acquire()
        info = holder_of(state)
        assert info is not None and info.holder == "a" and info.acquired_at == T0
        assert info.expires_at == T0 + timedelta(seconds=11)
        now[0] = T0 + timedelta(seconds=12)  # a stopped renewing
        assert b.acquire() and not a.acquire() and not a.held
        info = holder_of(state)
        assert info is not None and info.holder == "b" and info.acquired_at == now[0]
        b.release()
        assert holder_of(state) is None and a.acquire()
        takes = [e.actor for e in audit.entries(state) if e.action == "lease.take"]
        assert takes == ["a", "b", "a"]
        assert audit.verify(state).ok
    finally:
        state.close()
