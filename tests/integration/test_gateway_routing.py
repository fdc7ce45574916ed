"""Sticky canary assignment, plant scope, and route changes reaching live traffic in time."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwarden.errors import ConflictError
from modelwarden.gateway import fake_upstream
from modelwarden.governance import registry
from modelwarden.governance.keys import create_key
from modelwarden.governance.routes import RouteSpec, Upstream, route_history, set_routes
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
MESSAGES = [{"role": "user", "content": "What torque for the M12 flange bolts?"}]


def expected_bucket(user: str, salt: str) -> float:
    """The documented rule, written out again: SHA-256 of salt, 0x1f, user; 8 bytes; mod 10000."""
    digest = hashlib.sha256(salt.encode() + b"\x1f" + user.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


@pytest.fixture(scope="module")
def ups() -> Iterator[tuple[str, str]]:
    a = ServerThread(fake_upstream.create_app(V11, latency_ms=0)).start()
    b = ServerThread(fake_upstream.create_app(V12, latency_ms=0)).start()
    yield a.url, b.url
    a.stop()
    b.stop()


@pytest.fixture
def gateway(tmp_path: Path, ups: tuple[str, str]) -> Iterator[tuple[str, StateStore, Path]]:
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    set_routes(state, RouteSpec(stable=Upstream(version=V11, url=ups[0])))
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    with ServerThread(create_app(settings, ServerConfig(flush_interval_s=0.2))) as srv:
        yield srv.url, state, data
    state.close()


def route_of(
    http: httpx.Client, user: str | None, plant: str | None = None, via_header: bool = False
) -> str:
    body: dict[str, Any] = {"model": "x", "messages": MESSAGES}
    headers = {}
    if user is not None and via_header:
        headers["X-User-Id"] = user
    elif user is not None:
        body["user"] = user
    if plant:
        headers["X-Plant-Id"] = plant
    resp = http.post("/v1/chat/completions", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    route = resp.headers["x-modelwarden-route"]
    assert resp.json()["model"] == (V12 if route == "canary" else V11)
    return route


def put_routes(http: httpx.Client, **spec: Any) -> dict[str, Any]:
    resp = http.put("/v1/routes", json=spec)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def routes_of(
    url: str, headers: dict[str, str], users: list[str], plant: str, via_header: bool
) -> dict[str, str]:
    """Each user's route, asked concurrently (as a plant's many operators would)."""
    limit = asyncio.Semaphore(16)

    async def one(http: httpx.AsyncClient, i: int, user: str) -> tuple[str, str]:
        header = via_header == (i % 2 == 1)
        body: dict[str, Any] = {"model": "x", "messages": MESSAGES}
        extra = {"X-Plant-Id": plant, **({"X-User-Id": user} if header else {})}
        if not header:
            body["user"] = user
        async with limit:
            resp = await http.post("/v1/chat/completions", json=body, headers=extra)
        assert resp.status_code == 200, resp.text
        return user, resp.headers["x-modelwarden-route"]

    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as http:
        pairs = await asyncio.gather(*(one(http, i, u) for i, u in enumerate(users)))
    return dict(pairs)


def test_sticky_assignment_is_exactly_the_hash_and_growing_the_weight_keeps_users(
    gateway: tuple[str, StateStore, Path],
    ups: tuple[str, str],
) -> None:
    url, state, _data = gateway
    key, _ = create_key(state, "operator")
    auth = {"Authorization": f"Bearer {key}"}
    users = [f"operator-{i:04d}" for i in range(1000)]
    with httpx.Client(base_url=url, timeout=10, headers=auth) as http:
        put_routes(
            http,
            stable={"version": V11, "url": ups[0]},
            canary={"version": V12, "url": ups[1]},
            canary_weight=5,
        )
    first = asyncio.run(routes_of(url, auth, users, "Plant_B", via_header=True))
    on_canary = {u for u, r in first.items() if r == "canary"}
    want = {u for u in users if expected_bucket(u, V12) < 5}
    assert on_canary == want
    assert 25 <= len(want) <= 80  # about 5 % of 1000

    # Again, in another order and through the other field: the same users, every time.
    sample = sorted(want) + [u for u in users if u not in want][:100]
    again = asyncio.run(routes_of(url, auth, sample[::-1], "Plant_A", via_header=False))
    assert {u for u, r in again.items() if r == "canary"} == want

    with httpx.Client(base_url=url, timeout=10, headers=auth) as http:
        put_routes(
            http,
            stable={"version": V11, "url": ups[0]},
            canary={"version": V12, "url": ups[1]},
            canary_weight=25,
        )
    grown = asyncio.run(routes_of(url, auth, users, "Plant_B", via_header=False))
    grown_set = {u for u, r in grown.items() if r == "canary"}
    assert grown_set == {u for u in users if expected_bucket(u, V12) < 25}
    assert want < grown_set


def test_plant_scope_and_anonymous_requests_stay_on_stable(
    gateway: tuple[str, StateStore, Path],
    ups: tuple[str, str],
) -> None:
    url, state, _ = gateway
    set_routes(
        state,
        RouteSpec(
            stable=Upstream(version=V11, url=ups[0]),
            canary=Upstream(version=V12, url=ups[1]),
            canary_weight=100,
            canary_plants=["Plant_B"],
        ),
    )
    time.sleep(0.6)  # the route cache's lifetime: this change did not go through the server
    with httpx.Client(base_url=url, timeout=10) as http:
        assert {route_of(http, f"u{i}", "Plant_B") for i in range(20)} == {"canary"}
        assert {route_of(http, f"u{i}", "Plant_A") for i in range(20)} == {"stable"}
        assert route_of(http, "u1", None) == "stable"
        assert route_of(http, None, "Plant_B") == "stable"


def test_a_rollback_from_the_cli_reaches_every_request_within_a_second(
    gateway: tuple[str, StateStore, Path],
    ups: tuple[str, str],
    run_cli: Any,
) -> None:
    url, state, data = gateway
    set_routes(
        state,
        RouteSpec(
            stable=Upstream(version=V11, url=ups[0]),
            canary=Upstream(version=V12, url=ups[1]),
            canary_weight=100,
        ),
    )
    seen: list[tuple[float, str]] = []
    with httpx.Client(base_url=url, timeout=10) as http:
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            seen.append((time.monotonic(), route_of(http, "op-1")))
        assert {r for _t, r in seen} == {"canary"}
        res = run_cli(
            "routes",
            "set",
            "--stable",
            f"{V11}={ups[0]}",
            "--note",
            "SOP-MLOPS-003 rollback",
            data=data,
        )
        assert res.code == 0, res.err
        changed = time.monotonic()  # the change is committed before the command exits
        after: list[tuple[float, str]] = []
        while time.monotonic() < changed + 1.5:
            started = time.monotonic()
            after.append((started, route_of(http, "op-1")))
    late = [r for t, r in after if t >= changed + 1.0]
    assert late and set(late) == {"stable"}
    first_stable = min(t for t, r in after if r == "stable")
    assert first_stable - changed < 1.0
    history = route_history(state)
    assert history[0].canary is None and history[0].note == "SOP-MLOPS-003 rollback"
    assert history[1].canary is not None and history[1].canary.version == V12


def test_put_routes_applies_at_once_and_guards_its_version(
    gateway: tuple[str, StateStore, Path],
    ups: tuple[str, str],
) -> None:
    url, state, _data = gateway
    key, made = create_key(state, "operator")
    key_id = made.id
    with httpx.Client(base_url=url, timeout=10, headers={"Authorization": f"Bearer {key}"}) as http:
        live = http.get("/v1/routes").json()
        table = put_routes(
            http,
            stable={"version": V11, "url": ups[0]},
            canary={"version": V12, "url": ups[1] + "/"},
            canary_weight=100,
            if_version=live["version"],
        )
        assert table["version"] == live["version"] + 1
        assert table["canary"]["url"] == ups[1]
        assert table["created_by"].startswith(f"key {key_id} ")
        assert route_of(http, "anyone") == "canary"  # no waiting: this server made the change

        stale = http.put(
            "/v1/routes",
            json={"stable": {"version": V11, "url": ups[0]}, "if_version": live["version"]},
        )
        assert stale.status_code == 409
        assert stale.json()["error"]["details"]["live_version"] == table["version"]

        same = http.put(
            "/v1/routes",
            json={
                "stable": {"version": V11, "url": ups[0]},
                "canary": {"version": V11, "url": ups[1]},
                "canary_weight": 5,
            },
        )
        assert same.status_code == 422
        assert same.json()["error"]["code"] == "invalid_body"
        bad_url = http.put("/v1/routes", json={"stable": {"version": V11, "url": "ftp://x"}})
        assert bad_url.status_code == 422
        assert bad_url.json()["error"]["field"] == "stable.url"
        weight = http.put(
            "/v1/routes",
            json={
                "stable": {"version": V11, "url": ups[0]},
                "canary": {"version": V12, "url": ups[1]},
                "canary_weight": 101,
            },
        )
        assert weight.status_code == 422
        history = http.get("/v1/routes", params={"history": "true"}).json()
        assert [t["version"] for t in history] == [table["version"], live["version"]]


def test_a_quarantined_version_is_refused_and_never_served(
    gateway: tuple[str, StateStore, Path],
    ups: tuple[str, str],
) -> None:
    url, state, _data = gateway
    key, _ = create_key(state, "operator")
    registry.add(state, V12, ups[1], "test")
    with httpx.Client(base_url=url, timeout=10, headers={"Authorization": f"Bearer {key}"}) as http:
        put_routes(
            http,
            stable={"version": V11, "url": ups[0]},
            canary={"version": V12, "url": ups[1]},
            canary_weight=100,
        )
        assert route_of(http, "op-3") == "canary"
        registry.quarantine(state, V12, "unsafe answers at Plant_B", "test")
        refused = http.put(
            "/v1/routes",
            json={
                "stable": {"version": V11, "url": ups[0]},
                "canary": {"version": V12, "url": ups[1]},
                "canary_weight": 100,
            },
        )
        assert refused.status_code == 409
        assert refused.json()["error"]["details"]["quarantined"] == [V12]
        # The live table, written before the quarantine, still names it; it is never served.
        with pytest.raises(ConflictError):
            set_routes(
                state,
                RouteSpec(
                    stable=Upstream(version=V11, url=ups[0]),
                    canary=Upstream(version=V12, url=ups[1]),
                    canary_weight=100,
                ),
            )
        time.sleep(0.6)
        assert {route_of(http, f"op-{i}") for i in range(10)} == {"stable"}
