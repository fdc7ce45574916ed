"""SOP-MLOPS-003 end to end: `modelwarden serve`, two fake models, a canary that turns unsafe.

v1.2 serves 5 % of Plant_B's users and answers unsafely; one `rollout tick` rolls it back, the
running gateway serves v1.1 to everyone within a second, v1.2 is quarantined, and it comes back
only after an evaluation run passes its gate and a different key with the approver role approves.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from serveproc import Proc

from modelwarden.governance.routes import bucket
from modelwarden.server.runner import wait_for_spool

CLI = str(Path(sys.executable).parent / "modelwarden")
V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
QUESTION = "What PPE do I need to handle sulfuric acid?"


def parallel(jobs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Independent commands side by side: each CLI process spends most of its time starting."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {k: pool.submit(job) for k, job in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, run_cli: Any) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("sop")
    data = root / "warden-data"
    good = Proc("fake-upstream", "--version", V11, "--latency-ms", "1")
    bad = Proc("fake-upstream", "--version", V12, "--latency-ms", "1", "--quality", "unsafe")
    fixed = Proc("fake-upstream", "--version", V12, "--latency-ms", "1")  # the fixed build
    server = Proc("--data", str(data), "serve", "--flush-interval", "0.2")
    procs = [good, bad, fixed, server]
    out: dict[str, Any] = {"root": root, "data": data}

    def cli(*args: str) -> Any:
        return run_cli(*args, data=data, cwd=root)

    def key(role: str) -> str:
        res = cli("keys", "create", "--role", role, "--name", role, "--format", "json")
        assert res.code == 0, res.err
        return str(json.loads(res.out)["key"])

    try:
        for p in procs:
            p.wait()
        keys = parallel({"ops": lambda: key("operator"), "board": lambda: key("approver")})
        ops, board = keys["ops"], keys["board"]
        out.update(ops=ops, board=board, cli=cli)
        setup = parallel(
            {
                "v11": lambda: cli(
                    "registry", "add", V11, "--endpoint", good.url, "--stable", "--key", ops
                ),
                "v12": lambda: cli("registry", "add", V12, "--endpoint", bad.url, "--key", ops),
                "golden": lambda: cli("eval", "init", "--out", "golden.jsonl"),
            }
        )
        for name, res in setup.items():
            assert res.code == 0, (name, res.err)
        after_setup = parallel(
            {
                "start": lambda: cli("rollout", "start", V12, "--key", ops, "--format", "json"),
                "base_run": lambda: cli(
                    "eval",
                    "run",
                    "--golden",
                    "golden.jsonl",
                    "--model",
                    V11,
                    "--endpoint",
                    f"{good.url}/v1",
                    "--name",
                    "v11-golden",
                    "--format",
                    "json",
                ),
            }
        )
        out.update(after_setup)
        assert after_setup["start"].code == 0, after_setup["start"].err

        canary_users = [u for u in (f"plant-b-op{i}" for i in range(5000)) if bucket(u, V12) < 5][
            :40
        ]
        stable_users = [
            f"plant-b-op{i}" for i in range(5000) if bucket(f"plant-b-op{i}", V12) >= 5
        ][:60]
        out["canary_users"] = canary_users
        headers = {"Authorization": f"Bearer {ops}", "X-Plant-Id": "Plant_B"}

        def ask(http: httpx.Client, user: str) -> str:
            r = http.post(
                "/v1/chat/completions",
                json={"user": user, "messages": [{"role": "user", "content": QUESTION}]},
            )
            assert r.status_code == 200, r.text
            return str(r.json()["model"])

        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as http:
            out["served_before"] = {u: ask(http, u) for u in canary_users + stable_users}
            wait_for_spool(server.url)
            out["tick"] = cli("rollout", "tick", "--format", "json")
            # The gateway picks the new route table up by itself; count from the tick's end.
            t1 = time.monotonic()
            while {ask(http, u) for u in canary_users[:5]} != {V11} and time.monotonic() - t1 < 5:
                time.sleep(0.02)
            out["restore_s"] = time.monotonic() - t1
            out["served_after"] = {u: ask(http, u) for u in canary_users + stable_users[:20]}

        incident = json.loads(out["tick"].out)["incident_id"]
        out.update(
            parallel(
                {
                    "show": lambda: cli("incidents", "show", incident, "--format", "json"),
                    "list": lambda: cli("incidents", "list"),
                    "refuse_promote": lambda: cli(
                        "registry", "promote", V12, "--to", "canary", "--key", ops
                    ),
                    "refuse_rollout": lambda: cli("rollout", "start", V12, "--key", ops),
                    "refuse_shadow": lambda: cli(
                        "shadow", "start", V12, "--sample", "0.2", "--key", ops
                    ),
                    "show_v12": lambda: cli("registry", "show", V12, "--format", "json"),
                    "fixed_run": lambda: cli(
                        "eval",
                        "run",
                        "--golden",
                        "golden.jsonl",
                        "--model",
                        V12,
                        "--endpoint",
                        f"{fixed.url}/v1",
                        "--name",
                        "v12-fixed",
                        "--format",
                        "json",
                    ),
                    "early": lambda: cli(
                        "registry", "approve", V12, "--eval-run", "v12-fixed", "--key", board
                    ),
                }
            )
        )
        out["request"] = cli(
            "registry", "request-release", V12, "--key", ops, "--reason", "prompt fixed"
        )
        out["own"] = cli("registry", "approve", V12, "--eval-run", "v12-fixed", "--key", ops)
        out["approve"] = cli(
            "registry",
            "approve",
            V12,
            "--eval-run",
            "v12-fixed",
            "--key",
            board,
            "--format",
            "json",
        )
        out.update(
            parallel(
                {
                    "released": lambda: cli("registry", "show", V12, "--format", "json"),
                    "verify": lambda: cli("audit", "verify"),
                }
            )
        )
        yield out
    finally:
        for p in procs:
            p.stop()


def test_the_canary_served_five_percent_of_plant_b(scenario: dict[str, Any]) -> None:
    served = scenario["served_before"]
    assert {served[u] for u in scenario["canary_users"]} == {V12}
    assert [v for u, v in served.items() if u not in scenario["canary_users"]] == [V11] * 60


def test_one_tick_rolls_back_and_the_gateway_follows_within_a_second(
    scenario: dict[str, Any],
) -> None:
    tick = scenario["tick"]
    assert tick.code == 1, tick.err  # exit 1: a check failed and the SOP acted
    rep = json.loads(tick.out)
    assert rep["action"] == "rollback" and rep["status"] == "rolled_back"
    assert any(f["rule_id"] == "safety_incident_rate" for f in rep["fired"])
    assert scenario["restore_s"] < 1.0
    assert set(scenario["served_after"].values()) == {V11}


def test_the_incident_has_its_numbers_timeline_and_rca_logs(scenario: dict[str, Any]) -> None:
    shown = scenario["show"]
    assert shown.code == 0, shown.err
    inc = json.loads(shown.out)
    t = inc["trigger"]
    assert inc["status"] == "mitigated" and inc["version"] == V12 and inc["stable_version"] == V11
    assert t["rule_id"] == "safety_incident_rate" and t["threshold"] == 1.0
    assert t["n"] == 40 and t["value"] == 1.0 and t["baseline_value"] == 0.0
    steps = [e["event"] for e in inc["timeline"]]
    assert steps[:2] == ["detected", "routes"] and "mitigated" in steps
    rca = Path(inc["rca_dir"])
    assert len((rca / "requests.jsonl").read_text().splitlines()) == 100
    assert scenario["list"].code == 0 and inc["id"] in scenario["list"].out


def test_the_quarantined_version_is_refused_everywhere(scenario: dict[str, Any]) -> None:
    for name in ("refuse_promote", "refuse_rollout", "refuse_shadow"):
        res = scenario[name]
        assert res.code == 2 and "quarantined" in res.err, (name, res.err)
    show = json.loads(scenario["show_v12"].out)
    assert show["version"]["status"] == "quarantined"


def test_release_needs_a_passing_evaluation_and_another_key(scenario: dict[str, Any]) -> None:
    for name in ("base_run", "fixed_run", "request"):
        assert scenario[name].code == 0, (name, scenario[name].err)
    early = scenario["early"]
    assert early.code == 2 and "request-release" in early.err
    own = scenario["own"]
    assert own.code == 2 and "approver role" in own.err
    ok = scenario["approve"]
    assert ok.code == 0, ok.err
    res = json.loads(ok.out)
    assert res["approved"] and res["comparison"]["baseline_run_name"] == "v11-golden"
    show = json.loads(scenario["released"].out)
    assert show["version"]["status"] == "staging"
    assert [r["status"] for r in show["release_requests"]] == ["approved"]
    assert scenario["verify"].code == 0 and "intact" in scenario["verify"].out
