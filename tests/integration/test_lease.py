"""The controller lease: one holder at a time, renewed by its holder, taken over once expired;
its generation fences a stale holder's writes; a manual tick runs under it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelwarden.errors import LeaseHeld
from modelwarden.governance import audit, incidents
from modelwarden.governance.lease import TICK, Lease, LeaseLost, holder_of
from modelwarden.governance.routes import RouteSpec, Upstream, current_routes, set_routes
from modelwarden.policy.spec import default_policy
from modelwarden.rollout import rollback, service
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MANUAL: dict[str, Any] = {"rule_id": "manual", "source": "operator", "reason": "test"}
STABLE = Upstream(version="v1", url="http://127.0.0.1:9/v1")


@pytest.fixture
def state(state_url: str) -> Iterator[StateStore]:
    store = StateStore(state_url)
    yield store
    store.close()


@pytest.fixture
def settings(state_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", state_url=state_url)


@pytest.fixture
def now() -> list[datetime]:
    """The clock of :func:`leases`: set ``now[0]`` to move it."""
    return [T0]


@pytest.fixture
def leases(state: StateStore, now: list[datetime]) -> Callable[..., list[Lease]]:
    """``leases("a", "b")``: a 6 s controller lease for each holder, on the ``now`` clock."""

    def make(*holders: str) -> list[Lease]:
        return [Lease(state, holder=h, ttl_s=6, clock=lambda: now[0]) for h in holders]

    return make


def test_one_holder_renews_and_another_takes_over_after_expiry(
    state: StateStore, leases: Callable[..., list[Lease]], now: list[datetime]
) -> None:
    a, b = leases("a", "b")
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


def test_the_generation_rises_at_each_change_of_holder_and_never_falls(
    state: StateStore, leases: Callable[..., list[Lease]], now: list[datetime]
) -> None:
    a, b = leases("a", "b")
    assert a.acquire() and a.generation == 1
    now[0] += timedelta(seconds=4)
    assert a.acquire() and a.generation == 1  # a renewal is the same holding
    now[0] += timedelta(seconds=20)
    assert a.acquire() and a.generation == 1  # expired, but nobody else took it meanwhile
    now[0] += timedelta(seconds=20)
    assert b.acquire() and b.generation == 2
    b.release()  # the row stays, so the next holder's token is still higher
    assert a.acquire() and a.generation == 3
    info = holder_of(state)
    assert info is not None and info.generation == 3 and info.to_dict()["generation"] == 3


def test_a_stale_holder_is_fenced_inside_its_own_transaction(
    state: StateStore, leases: Callable[..., list[Lease]], now: list[datetime]
) -> None:
    a, b = leases("a", "b")
    assert a.acquire()
    with audit.transaction(state) as con:
        a.check_in(con)  # the live holder passes
    now[0] += timedelta(seconds=30)  # a is paused past its lease; b takes over
    assert b.acquire()
    assert a.held  # a has not noticed: only the fence can stop it
    with (
        pytest.raises(LeaseLost, match=r"generation 1.*held by b \(generation 2\)"),
        audit.transaction(state) as con,
    ):
        a.check_in(con)
        audit.append(con, "a", "test.write", "x")
    assert not a.held
    assert not [e for e in audit.entries(state) if e.action == "test.write"]


def _routes(state: StateStore) -> None:
    set_routes(
        state,
        RouteSpec(
            stable=STABLE,
            canary=Upstream(version="v2", url="http://127.0.0.1:9/v1"),
            canary_weight=0.1,
        ),
        created_by="test",
    )


def test_a_stale_holder_cannot_roll_back(
    settings: Settings,
    state: StateStore,
    leases: Callable[..., list[Lease]],
    now: list[datetime],
) -> None:
    """The rollback transaction checks the fence first: a replaced holder opens no incident and
    moves no traffic, while the live holder's rollback goes through."""
    stale, live = leases("stale", "live")
    _routes(state)
    before = current_routes(state)
    assert stale.acquire()
    now[0] += timedelta(seconds=30)
    assert live.acquire()

    def roll_back(fence: Lease) -> rollback.RollbackResult:
        return rollback.rollback(
            settings, "v2", STABLE, MANUAL, policy=default_policy(), state=state, fence=fence
        )

    with pytest.raises(LeaseLost):
        roll_back(stale)
    assert incidents.list_incidents(state) == []
    after = current_routes(state)
    assert after is not None and before is not None and after.version == before.version
    res = roll_back(live)
    assert res.created and res.incident.status == "mitigated"
    live_routes = current_routes(state)
    assert live_routes is not None and live_routes.canary is None
    assert audit.verify(state).ok


def test_a_manual_tick_takes_the_tick_lock_and_gives_it_back(
    settings: Settings, state: StateStore
) -> None:
    leader = Lease(state, holder="host-a:1:serve", ttl_s=60)
    assert leader.acquire()  # a serving instance leads: a tick by hand still runs
    rep = service.locked_tick(settings, state, holder="tick@test")
    assert rep.action == "none"
    assert holder_of(state, TICK) is None  # released at once
    info = holder_of(state)
    assert info is not None and info.holder == "host-a:1:serve"
    # The lock changes hands at every tick, so taking it is not audited.
    takes = [e.actor for e in audit.entries(state) if e.action == "lease.take"]
    assert takes == ["host-a:1:serve"]


def test_a_manual_tick_is_refused_while_another_tick_runs(
    settings: Settings, state: StateStore
) -> None:
    ticking = Lease(state, TICK, holder="host-a:4242:serve", ttl_s=60, audit_takes=False)
    assert ticking.acquire()
    t = time.monotonic()
    with pytest.raises(
        LeaseHeld,
        match=r"another instance holds the controller's tick lock "
        r"\(host-a:4242:serve, until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)",
    ):
        service.locked_tick(settings, state, wait_s=0.3)
    assert time.monotonic() - t < 5
    info = holder_of(state, TICK)
    assert info is not None and info.holder == "host-a:4242:serve"


def test_a_manual_tick_waits_for_the_tick_under_way(settings: Settings, state: StateStore) -> None:
    """A tick by hand waits for the other instance's tick to end (here, its lock expiring as a
    killed holder's would), then runs."""
    other = Lease(state, TICK, holder="killed", ttl_s=0.8, audit_takes=False)
    assert other.acquire()
    t = time.monotonic()
    rep = service.locked_tick(settings, state, wait_s=10, holder="tick@test")
    assert rep.action == "none" and time.monotonic() - t >= 0.5
    info = holder_of(state, TICK)
    assert info is None


def test_rollout_tick_command_exits_1_naming_the_holder(
    state_url: str, state: StateStore, tmp_path: Path, run_cli: Any
) -> None:
    data = tmp_path / "data"
    ticking = Lease(state, TICK, holder="host-b:99:serve", ttl_s=120, audit_takes=False)
    assert ticking.acquire()
    # It waits for the tick under way (30 s), then says who holds the lock.
    res = run_cli("rollout", "tick", "--format", "json", data=data, state_url=state_url)
    assert res.code == 1, res.err
    err = json.loads(res.err)["error"]
    assert err["code"] == "lease_held" and err["details"]["holder"] == "host-b:99:serve"
    assert (
        "another instance holds the controller's tick lock (host-b:99:serve, until"
        in (err["message"])
    )
    ticking.release()
    res = run_cli("rollout", "tick", "--format", "json", data=data, state_url=state_url)
    assert res.code == 0, res.err
    assert json.loads(res.out)["action"] == "none"
