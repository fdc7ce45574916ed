"""Two `modelwarden serve` processes on one PostgreSQL state, one shared log root, two spools.

A PostgreSQL server of its own (this module stops and starts it), two fake models, and two
instances on two ports. Checked in order on the same pair: route changes reach both gateways
within a second; sticky canary assignment is the same on both; concurrent audit appends from both
keep the chain valid; a rollback under traffic on both happens once; with PostgreSQL stopped,
ingest still acknowledges into the spool and state changes answer 503 with Retry-After, and all
recovers when it is back; killing the controller's instance hands the lease over within 10 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import yaml
from pgserver import USER as PG_USER
from pgserver import PgServer, pg_bin
from pytest_postgresql.janitor import DatabaseJanitor
from serveproc import Proc

from modelwarden.governance.routes import bucket
from modelwarden.policy.spec import default_policy
from modelwarden.server.runner import wait_for_spool

pytestmark = pytest.mark.postgres

CLI = str(Path(sys.executable).parent / "modelwarden")
V11, V12, V13 = "sop-assistant-v1.1", "sop-assistant-v1.2", "sop-assistant-v1.3"
QUESTION = "What PPE do I need to handle sulfuric acid?"


class Cluster:
    def __init__(self, root: Path, pg: PgServer, url: str) -> None:
        self.root, self.pg, self.state_url = root, pg, url
        self.env = {
            "MODELWARDEN_STATE_URL": url,
            "MODELWARDEN_SECRETS": str(root / "secrets"),
            "MODELWARDEN_LOG_ROOT": str(root / "log"),
            "MODELWARDEN_EMBEDDER": "hashing",
        }
        self.keys: dict[str, str] = {}
        self.servers: list[Proc] = []

    def cli(self, *args: str, data: str = "a") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, "--data", str(self.root / data), *args],
            capture_output=True,
            text=True,
            env={**os.environ, "NO_COLOR": "1", **self.env},
            timeout=120,
            check=False,
        )

    def auth(self, role: str = "operator") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}", "X-Plant-Id": "Plant_B"}

    def ask(self, server: Proc, user: str) -> str:
        r = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"user": user, "messages": [{"role": "user", "content": QUESTION}]},
            headers=self.auth(),
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["model"])

    def sql(self, query: str) -> list[Any]:
        import sqlalchemy as sa

        engine = sa.create_engine(self.state_url)
        try:
            with engine.connect() as con:
                return list(con.execute(sa.text(query)).all())
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    bin_dir = pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql, or set PG_BIN)")
    root = tmp_path_factory.mktemp("multi")
    pg = PgServer.start(bin_dir)
    ups = [
        Proc("fake-upstream", "--version", V11, "--latency-ms", "1"),
        Proc("fake-upstream", "--version", V12, "--latency-ms", "1"),
        Proc("fake-upstream", "--version", V13, "--latency-ms", "1", "--quality", "unsafe"),
    ]
    try:
        with DatabaseJanitor(user=PG_USER, host="127.0.0.1", port=pg.port, dbname="warden"):
            c = Cluster(root, pg, pg.url("warden"))
            c.upstreams = {V11: ups[0], V12: ups[1], V13: ups[2]}  # type: ignore[attr-defined]
            policy = default_policy().model_dump(mode="json")
            policy["notify"]["file_dir"] = str(root / "notified")
            for name in ("a", "b"):
                (root / name).mkdir()
                (root / name / "policy.yaml").write_text(yaml.safe_dump(policy))
            res = c.cli("db", "upgrade")
            assert res.returncode == 0, res.stderr
            for role in ("operator", "ingest", "admin"):
                res = c.cli("keys", "create", "--role", role, "--name", role, "--format", "json")
                assert res.returncode == 0, res.stderr
                c.keys[role] = json.loads(res.stdout)["key"]
            for args in (
                ("registry", "add", V11, "--endpoint", ups[0].url, "--stable"),
                ("registry", "add", V12, "--endpoint", ups[1].url),
                ("registry", "add", V13, "--endpoint", ups[2].url),
            ):
                res = c.cli(*args, "--key", c.keys["operator"])
                assert res.returncode == 0, res.stderr
            for name in ("a", "b"):
                c.servers.append(
                    Proc(
                        "--data",
                        str(root / name),
                        "serve",
                        "--flush-interval",
                        "0.2",
                        "--tick-interval",
                        "0.5",
                        env={**c.env, "MODELWARDEN_INSTANCE": name},
                    )
                )
            for p in [*ups, *c.servers]:
                p.wait()
            yield c
    finally:
        for p in [*c.servers, *ups] if "c" in locals() else ups:
            p.stop()
        pg.destroy()


def put_routes(c: Cluster, server: Proc, body: dict[str, Any]) -> httpx.Response:
    return httpx.put(f"{server.url}/v1/routes", json=body, headers=c.auth(), timeout=10)


def upstream(c: Cluster, version: str) -> dict[str, str]:
    return {"version": version, "url": c.upstreams[version].url}  # type: ignore[attr-defined]


CANARY_USERS = [u for u in (f"plant-b-op{i}" for i in range(4000)) if bucket(u, V12) < 20][:30]
STABLE_USERS = [u for u in (f"plant-b-op{i}" for i in range(4000)) if bucket(u, V12) >= 20][:30]


def test_a_route_change_on_one_reaches_both_gateways_within_a_second(cluster: Cluster) -> None:
    c = cluster
    a, b = c.servers
    r = put_routes(c, a, {"stable": upstream(c, V11)})
    assert r.status_code == 200, r.text
    time.sleep(1.0)
    assert {c.ask(s, u) for s in (a, b) for u in CANARY_USERS[:3]} == {V11}
    r = put_routes(
        c, a, {"stable": upstream(c, V11), "canary": upstream(c, V12), "canary_weight": 20}
    )
    assert r.status_code == 200, r.text
    t0 = time.monotonic()
    seen: dict[str, float] = {}
    while len(seen) < 2 and time.monotonic() - t0 < 5:
        for name, s in (("a", a), ("b", b)):
            if name not in seen and c.ask(s, CANARY_USERS[0]) == V12:
                seen[name] = time.monotonic() - t0
        time.sleep(0.02)
    assert set(seen) == {"a", "b"} and max(seen.values()) < 1.0, seen


def test_sticky_canary_assignment_is_the_same_on_both(cluster: Cluster) -> None:
    c = cluster
    a, b = c.servers
    users = CANARY_USERS + STABLE_USERS
    on_a = {u: c.ask(a, u) for u in users}
    on_b = {u: c.ask(b, u) for u in users}
    assert on_a == on_b
    assert {on_a[u] for u in CANARY_USERS} == {V12}
    assert {on_a[u] for u in STABLE_USERS} == {V11}


def test_concurrent_audit_appends_from_both_keep_the_chain_valid(cluster: Cluster) -> None:
    c = cluster
    a, b = c.servers
    before = c.sql("SELECT count(*) FROM audit_log")[0][0]
    body = {"stable": upstream(c, V11), "canary": upstream(c, V12), "canary_weight": 20}
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: put_routes(c, (a, b)[i % 2], body).status_code, range(40)))
    assert codes == [200] * 40
    after = c.sql("SELECT count(*) FROM audit_log")[0][0]
    assert after - before >= 40
    seqs = [r[0] for r in c.sql("SELECT seq FROM audit_log ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    res = c.cli("audit", "verify")
    assert res.returncode == 0 and "intact" in res.stdout, res.stdout + res.stderr


def test_a_rollback_under_traffic_on_both_happens_once(cluster: Cluster) -> None:
    c = cluster
    a, b = c.servers
    r = put_routes(c, a, {"stable": upstream(c, V11)})
    assert r.status_code == 200, r.text
    res = c.cli("rollout", "start", V13, "--key", c.keys["operator"], "--format", "json")
    assert res.returncode == 0, res.stderr
    canary = [u for u in (f"plant-b-op{i}" for i in range(5000)) if bucket(u, V13) < 5][:40]
    time.sleep(1.0)
    # Traffic through both instances until the controller (on one of them) rolls back.
    deadline = time.monotonic() + 60
    rolled = False
    while time.monotonic() < deadline and not rolled:
        for i, u in enumerate(canary):
            c.ask((a, b)[i % 2], u)
        rolled = bool(c.sql("SELECT count(*) FROM incidents")[0][0])
        time.sleep(0.2)
    assert rolled, "no rollback within 60 s"
    # The incident row can land just before an instance's route cache (0.5 s) next reloads.
    settle = time.monotonic() + 5
    while {c.ask(s, u) for s in (a, b) for u in canary[:4]} != {V11}:
        assert time.monotonic() < settle, "an instance still serves the rolled-back version"
        time.sleep(0.1)
    # Keep serving for a few more controller ticks on both: nothing happens a second time.
    t_end = time.monotonic() + 3
    while time.monotonic() < t_end:
        assert {c.ask(s, u) for s in (a, b) for u in canary[:4]} == {V11}
        time.sleep(0.1)
    assert c.sql("SELECT count(*) FROM incidents")[0][0] == 1
    quarantines = c.sql(
        "SELECT count(*) FROM audit_log WHERE action = 'registry.transition' "
        f"AND subject = '{V13}' AND evidence LIKE '%\"to\":\"quarantined\"%'"
    )[0][0]
    assert quarantines == 1
    assert c.sql("SELECT count(*) FROM notifications")[0][0] == 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not list((c.root / "notified").glob("*")):
        time.sleep(0.1)
    time.sleep(1.0)
    assert len(list((c.root / "notified").glob("*"))) == 1
    assert c.cli("audit", "verify").returncode == 0


def test_with_postgresql_down_ingest_is_kept_and_state_changes_get_503(cluster: Cluster) -> None:
    c = cluster
    a, b = c.servers
    ingest = {"Authorization": f"Bearer {c.keys['ingest']}"}
    # Both instances have seen the ingest key and the routes before the database goes.
    for s in (a, b):
        r = httpx.post(f"{s.url}/v1/logs", json=[_rec(f"warm-{s.port}")], headers=ingest)
        assert r.status_code == 200, r.text
    c.pg.stop()
    try:
        sent = []
        for i in range(20):
            s = (a, b)[i % 2]
            rid = f"outage-{i}"
            r = httpx.post(f"{s.url}/v1/logs", json=[_rec(rid)], headers=ingest, timeout=10)
            assert r.status_code == 200, r.text
            sent.append(rid)
        assert {c.ask(s, "plant-b-op1") for s in (a, b)} == {V11}  # the last routes serve
        r = put_routes(c, a, {"stable": upstream(c, V11)})
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "5"
        assert r.json()["error"]["code"] == "state_unavailable"
        assert "nothing was changed" in r.json()["error"]["message"]
    finally:
        c.pg.start_again()
    # Back by itself: the next state change goes through without a restart.
    deadline = time.monotonic() + 30
    while True:
        r = put_routes(c, b, {"stable": upstream(c, V11)})
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.status_code == 200, r.text
    for s in (a, b):
        wait_for_spool(s.url, headers=ingest)
    parts = str(c.root / "log" / "**" / "*.parquet")
    rel = duckdb.sql(
        f"SELECT request_id FROM read_parquet('{parts}', union_by_name=true) "
        "WHERE request_id LIKE 'outage-%'"
    )
    assert rel is not None
    got = rel.fetchall()
    assert sorted(r[0] for r in got) == sorted(sent)


def _rec(rid: str) -> dict[str, Any]:
    return {
        "request_id": rid,
        "timestamp": "2026-11-02T10:05:00Z",
        "plant_id": "Plant_B",
        "model_version": V11,
        "user_prompt": "What is the lubrication schedule for the main conveyor?",
        "generated_response": "Every 200 operating hours with ISO VG 46 oil.",
        "latency_ms": 250,
    }


def test_killing_the_controller_instance_hands_the_lease_over_within_10_s(
    cluster: Cluster,
) -> None:
    c = cluster
    deadline = time.monotonic() + 10
    leaders: list[Proc] = []
    while time.monotonic() < deadline:
        leaders = [s for s in c.servers if s.health()["controller"]["leader"]]
        if leaders:
            break
        time.sleep(0.2)
    assert len(leaders) == 1
    (leader,) = leaders
    (other,) = [s for s in c.servers if s is not leader]
    before = c.sql("SELECT holder FROM leases WHERE name = 'controller'")[0][0]
    os.kill(leader.proc.pid, signal.SIGKILL)
    leader.proc.wait()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 15 and not other.health()["controller"]["leader"]:
        time.sleep(0.1)
    took = time.monotonic() - t0
    assert other.health()["controller"]["leader"] and took < 10.0, took
    after = c.sql("SELECT holder FROM leases WHERE name = 'controller'")[0][0]
    assert after != before
    assert c.cli("audit", "verify").returncode == 0
