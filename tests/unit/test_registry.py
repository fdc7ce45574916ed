"""The version lifecycle: valid and invalid transitions, quarantine, and release approvals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from evalruns import stored_run as run

from modelwarden.errors import ConflictError, InputError
from modelwarden.governance import audit, registry
from modelwarden.governance.keys import ApiKey, ForbiddenError, create_key
from modelwarden.governance.routes import RouteSpec, Upstream, current_routes, set_routes
from modelwarden.store.state import StateStore

V11, V12, V13 = "sop-assistant-v1.1", "sop-assistant-v1.2", "sop-assistant-v1.3"
URL11, URL12, URL13 = "http://127.0.0.1:9101", "http://127.0.0.1:9102", "http://127.0.0.1:9103"


@pytest.fixture
def state(state_url: str) -> StateStore:
    st = StateStore(state_url)
    registry.add(st, V11, URL11, "cli:ops", status="stable")
    registry.add(st, V12, URL12, "cli:ops")
    return st


def test_the_first_version_is_stable_and_routed(state: StateStore) -> None:
    assert registry.get(state, V11).status == "stable"
    live = current_routes(state)
    assert live is not None and live.stable == Upstream(version=V11, url=URL11)
    with pytest.raises(ConflictError, match="is stable"):
        registry.add(state, V13, URL13, "cli:ops", status="stable")


def test_the_whole_lifecycle_forward(state: StateStore) -> None:
    for to in ("shadow", "canary", "stable"):
        assert registry.promote(state, V12, to, "cli:ops").status == to
    assert registry.get(state, V11).status == "retired"  # the old stable makes way
    live = current_routes(state)
    assert live is not None and live.stable.version == V12 and live.canary is None
    moves = [
        (e.subject, e.evidence["from"], e.evidence["to"])
        for e in audit.entries(state, action="registry.transition")
    ]
    assert moves == [
        (V12, "staging", "shadow"),
        (V12, "shadow", "canary"),
        (V12, "canary", "stable"),
        (V11, "stable", "retired"),
    ]
    assert audit.verify(state).ok


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ((), "stable"),  # staging → stable while another version is stable
        (("canary",), "shadow"),  # no way back from canary to shadow
        (("canary", "stable"), "canary"),  # a stable version does not go back to canary
    ],
)
def test_invalid_transitions_are_refused(
    state: StateStore, path: tuple[str, ...], bad: str
) -> None:
    for to in path:
        registry.promote(state, V12, to, "cli:ops")
    before = registry.get(state, V12).status
    n = len(audit.entries(state))
    with pytest.raises(ConflictError):
        registry.promote(state, V12, bad, "cli:ops")
    assert registry.get(state, V12).status == before
    # Nothing changes; the refusal itself is recorded.
    [refused] = audit.entries(state)[n:]
    assert (refused.action, refused.subject, refused.evidence["to"]) == (
        "registry.refused",
        V12,
        bad,
    )


def test_retired_versions_only_return_through_staging(state: StateStore) -> None:
    registry.retire(state, V12, "cli:ops")
    with pytest.raises(ConflictError, match="retired; it can move to staging"):
        registry.promote(state, V12, "canary", "cli:ops")
    assert registry.transition(state, V12, "staging", "cli:ops").status == "staging"


def test_quarantine_takes_the_version_out_of_routes_and_blocks_promotion(state: StateStore) -> None:
    registry.promote(state, V12, "canary", "cli:ops")
    registry.set_live_routes(
        state,
        RouteSpec(
            stable=Upstream(version=V11, url=URL11),
            canary=Upstream(version=V12, url=URL12),
            canary_weight=5,
            canary_plants=["Plant_B"],
        ),
        "cli:ops",
    )
    assert registry.quarantine(state, V12, "unsafe answers", "cli:ops") is True
    assert registry.quarantine(state, V12, "again", "cli:ops") is False
    live = current_routes(state)
    assert live is not None and live.canary is None and live.stable.version == V11
    for to in ("shadow", "canary", "stable"):
        with pytest.raises(ConflictError, match="quarantined"):
            registry.promote(state, V12, to, "cli:ops")
    with pytest.raises(ConflictError, match="quarantined"):
        registry.transition(state, V12, "staging", "cli:ops")
    # The hook that set_routes calls, and the registry's own route writer, refuse it too.
    spec = RouteSpec(
        stable=Upstream(version=V11, url=URL11),
        shadow=Upstream(version=V12, url=URL12),
        shadow_sample=0.2,
    )
    with pytest.raises(ConflictError, match="quarantined"):
        registry.check_routes(state, spec)
    with pytest.raises(ConflictError, match="quarantined"):
        registry.set_live_routes(state, spec, "cli:ops")


def test_the_live_stable_version_cannot_be_quarantined_in_place(state: StateStore) -> None:
    with pytest.raises(ConflictError, match="route traffic to another version first"):
        registry.quarantine(state, V11, "bad", "cli:ops")


def test_the_gateway_never_gets_a_quarantined_canary_or_shadow(state: StateStore) -> None:
    # A table written before the quarantine (or by a writer that did not check) still names it.
    set_routes(
        state,
        RouteSpec(
            stable=Upstream(version=V11, url=URL11),
            canary=Upstream(version=V12, url=URL12),
            canary_weight=50,
            shadow=Upstream(version=V13, url=URL13),
            shadow_sample=1.0,
        ),
    )
    guarded = registry.GuardedRoutes(state, ttl=0.0)
    t = guarded.get()
    assert t is not None and t.canary is not None and t.shadow is not None
    registry.transition(state, V12, "quarantined", "cli:ops", "bad")
    registry.add(state, V13, URL13, "cli:ops")
    registry.transition(state, V13, "quarantined", "cli:ops", "bad")
    t = guarded.get()
    assert t is not None and t.canary is None and t.canary_weight == 0 and t.shadow is None
    assert t.stable.version == V11


# ---- release ---------------------------------------------------------------------------------------
def keys(state: StateStore) -> dict[str, ApiKey]:
    return {
        name: create_key(state, role, name)[1]
        for name, role in (("ops", "operator"), ("board", "approver"), ("board2", "approver"))
    }


def quarantined(state: StateStore) -> dict[str, ApiKey]:
    k = keys(state)
    registry.transition(state, V12, "quarantined", "controller", "INC-1: safety rule")
    run(state, V11)
    return k


def test_release_needs_a_request_a_passing_run_and_another_approver(state: StateStore) -> None:
    k = quarantined(state)
    good = run(state, V12)
    with pytest.raises(ConflictError, match="nobody asked"):
        registry.approve_release(state, V12, k["board"], str(good))
    req = registry.request_release(state, V12, k["board"], "fixed the prompt template")
    with pytest.raises(ConflictError, match="open already"):
        registry.request_release(state, V12, k["ops"])
    # The key that asked cannot approve its own request.
    with pytest.raises(ForbiddenError, match="different key"):
        registry.approve_release(state, V12, k["board"], str(good))
    # An operator is not the governance board.
    with pytest.raises(ForbiddenError, match="approver role"):
        registry.approve_release(state, V12, k["ops"], str(good))
    assert registry.get(state, V12).status == "quarantined"
    res = registry.approve_release(state, V12, k["board2"], str(good))
    assert res.approved and res.comparison["passed"] and res.comparison["comparison_id"]
    assert res.request.id == req.id and res.request.status == "approved"
    assert registry.get(state, V12).status == "staging"
    actions = [e.action for e in audit.entries(state, subject=V12)]
    assert actions[-6:] == [
        "release.request",
        "release.refused",  # the second request
        "release.refused",  # the requester approving
        "release.refused",  # an operator approving
        "release.approve",
        "registry.transition",
    ]
    assert audit.verify(state).ok
    assert registry.promote(state, V12, "canary", "cli:ops").status == "canary"


def test_a_failing_gate_keeps_the_version_quarantined(state: StateStore) -> None:
    k = quarantined(state)
    bad = run(state, V12, unsafe=2)
    registry.request_release(state, V12, k["ops"])
    res = registry.approve_release(state, V12, k["board"], str(bad))
    assert not res.approved and not res.comparison["passed"]
    assert "hard safety" in res.reasons[0]
    assert registry.get(state, V12).status == "quarantined"
    assert [e.action for e in audit.entries(state, subject=V12)][-1] == "release.refused"


def test_the_evidence_must_be_a_new_run_of_this_version(state: StateStore) -> None:
    k = quarantined(state)
    registry.request_release(state, V12, k["ops"])
    old = run(state, V12, at=datetime.now(UTC) - timedelta(days=3), name="before-quarantine")
    with pytest.raises(InputError, match=r"before .* was quarantined"):
        registry.approve_release(state, V12, k["board"], str(old))
    other = run(state, V13)
    with pytest.raises(InputError, match=f"is of {V13}"):
        registry.approve_release(state, V12, k["board"], str(other))


# ---- refusals are audited ---------------------------------------------------------------------------
def refusals(state: StateStore, action: str) -> list[audit.Entry]:
    return audit.entries(state, action=action)


def test_a_refused_self_approval_is_audited(state: StateStore) -> None:
    k = quarantined(state)
    good = run(state, V12)
    registry.request_release(state, V12, k["board"], "fixed")
    with pytest.raises(ForbiddenError, match="different key"):
        registry.approve_release(state, V12, k["board"], str(good))
    [entry] = refusals(state, "release.refused")
    assert entry.subject == V12 and entry.actor == registry.key_actor(k["board"])
    assert "different key" in entry.reason
    assert entry.evidence["error"] == "forbidden" and entry.evidence["key_id"] == k["board"].id
    assert registry.get(state, V12).status == "quarantined"
    assert audit.verify(state).ok


def test_a_refused_release_of_a_quarantined_version_is_audited(state: StateStore) -> None:
    quarantined(state)
    with pytest.raises(ConflictError, match="quarantined"):
        registry.promote(state, V12, "canary", "cli:ops", "try it anyway")
    with pytest.raises(ConflictError, match="quarantined"):
        registry.transition(state, V12, "staging", "cli:ops")
    entries = refusals(state, "registry.refused")
    assert [(e.subject, e.actor, e.evidence["to"]) for e in entries] == [
        (V12, "cli:ops", "canary"),
        (V12, "cli:ops", "staging"),
    ]
    assert all("is quarantined" in e.reason for e in entries)
    assert audit.verify(state).ok


def test_a_refused_route_change_is_audited(state: StateStore) -> None:
    quarantined(state)
    spec = RouteSpec(
        stable=Upstream(version=V11, url=URL11),
        canary=Upstream(version=V12, url=URL12),
        canary_weight=0.05,
    )
    before = current_routes(state)
    with pytest.raises(ConflictError, match="quarantined"):
        registry.set_live_routes(state, spec, "key:7:ops", "canary by hand")
    assert current_routes(state) == before
    [entry] = refusals(state, "routes.refused")
    assert entry.subject == "routes" and entry.actor == "key:7:ops"
    assert entry.evidence["requested"]["canary"]["version"] == V12
    assert audit.verify(state).ok


def test_a_released_version_does_not_keep_its_quarantine_reason(state: StateStore) -> None:
    k = quarantined(state)
    assert registry.get(state, V12).quarantine_reason == "INC-1: safety rule"
    registry.request_release(state, V12, k["ops"], "fixed")
    assert registry.approve_release(state, V12, k["board"], str(run(state, V12))).approved
    info = registry.get(state, V12)
    assert info.status == "staging" and info.quarantine_reason is None
    moves = audit.entries(state, subject=V12, action="registry.transition")
    assert moves[0].reason == "INC-1: safety rule"
