"""The SOP commands as a user runs them: policy check and replay over history, the SOP document
rendered from the policy file, the registry's refusals and the audit log's verification."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"


def parallel(jobs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {k: pool.submit(job) for k, job in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


@pytest.fixture(scope="module")
def history(seeded_data_dir: Path, run_cli: Any) -> dict[str, Any]:
    """policy check and replay over the seeded weeks (v1.2 on a quarter of Plant_B's users)."""

    def cli(*args: str) -> Any:
        return run_cli(*args, data=seeded_data_dir)

    return parallel(
        {
            "check": lambda: cli(
                "policy",
                "check",
                "--from",
                "2026-11-19",
                "--to",
                "2026-11-23",
                "--step",
                "1h",
                "--candidate",
                V12,
                "--format",
                "json",
            ),
            "replay": lambda: cli(
                "policy",
                "replay",
                "--from",
                "2026-11-16",
                "--to",
                "2026-11-23",
                "--step",
                "30m",
                "--format",
                "json",
            ),
            "check_quiet": lambda: cli(
                "policy",
                "check",
                "--from",
                "2026-11-03",
                "--to",
                "2026-11-05",
                "--step",
                "1h",
                "--candidate",
                V12,
            ),
        }
    )


def test_policy_check_names_the_rule_the_time_and_the_candidate(history: dict[str, Any]) -> None:
    res = history["check"]
    assert res.code == 1, res.err
    out = json.loads(res.out)
    assert out["watched"] == [f"{V12} vs {V11}"]
    fired = out["fired"]
    assert fired and {f["candidate"] for f in fired} == {V12}
    first = fired[0]
    assert first["rule_id"] == "confirmed_violation" and first["severity"] == "rollback"
    assert first["first_at"] >= "2026-11-19" and first["value"] >= 1
    # Before the canary existed there is nothing to fire for it.
    assert history["check_quiet"].code == 0, history["check_quiet"].err
    assert "no rows" in history["check_quiet"].out


def test_policy_replay_gives_each_rollback_its_time_to_detect(history: dict[str, Any]) -> None:
    res = history["replay"]
    assert res.code == 1, res.err
    incidents = {i["candidate"]: i for i in json.loads(res.out)["incidents"]}
    v12 = incidents[V12]
    assert v12["stable"] == V11 and v12["exposed_since"] >= "2026-11-19"
    assert 0 < v12["time_to_detect_h"] < 96
    assert v12["detected_at"] > v12["exposed_since"]


def test_policy_file_drives_both_the_engine_and_the_document(tmp_path: Path, run_cli: Any) -> None:
    data = tmp_path / "warden-data"

    def cli(*args: str) -> Any:
        return run_cli(*args, data=data, cwd=tmp_path)

    assert cli("policy", "init").code == 0
    path = data / "policy.yaml"
    again = cli("policy", "init")
    assert again.code == 2 and "--force" in again.err
    text = path.read_text()
    assert "id: confirmed_incorrect_escalations" in text and "threshold: 3.0" in text
    custom = tmp_path / "strict.yaml"
    custom.write_text(text.replace("threshold: 0.5", "threshold: 0.7"))
    res = parallel(
        {
            "default": lambda: cli("sop", "render"),
            "custom": lambda: cli("sop", "render", "--policy", str(custom), "--out", "sop.md"),
            "show": lambda: cli("policy", "show", "--policy", str(custom), "--format", "json"),
            "bad": lambda: cli("sop", "render", "--policy", str(tmp_path / "missing.yaml")),
        }
    )
    doc = res["default"].out
    assert res["default"].code == 0 and "**SOP-MLOPS-003: Emergency Model Rollback**" in doc
    for needle in (
        "More than 3 user-reported escalations",
        "feedback_avg decrease 0.5",
        "#manufacturing-ai-status",
        "12-hour rolling window",
    ):
        assert needle in doc, needle
    assert res["custom"].code == 0
    custom_doc = (tmp_path / "sop.md").read_text()
    assert "feedback_avg decrease 0.7" in custom_doc and "decrease 0.5" not in custom_doc
    rules = {r["id"]: r for r in json.loads(res["show"].out)["rules"]}
    assert rules["feedback_drop"]["threshold"] == 0.7
    assert res["bad"].code == 2 and "cannot read policy" in res["bad"].err


def test_registry_refusals_and_a_tampered_audit_log(tmp_path: Path, run_cli: Any) -> None:
    data = tmp_path / "warden-data"

    def cli(*args: str) -> Any:
        return run_cli(*args, data=data, cwd=tmp_path)

    no_key = cli("registry", "add", V11, "--endpoint", "http://127.0.0.1:9101", "--stable")
    assert no_key.code == 2 and "API key" in no_key.err
    made = cli("keys", "create", "--role", "operator", "--name", "ops", "--format", "json")
    ingest = cli("keys", "create", "--role", "ingest", "--format", "json")
    ops, ingest_key = json.loads(made.out)["key"], json.loads(ingest.out)["key"]
    wrong = cli("registry", "add", V11, "--endpoint", "http://127.0.0.1:9101", "--key", ingest_key)
    assert wrong.code == 2 and "role 'ingest' may not" in wrong.err
    add = ("registry", "add", V11, "--endpoint", "http://127.0.0.1:9101", "--stable", "--key", ops)
    assert cli(*add).code == 0
    assert (
        cli("registry", "add", V12, "--endpoint", "http://127.0.0.1:9102", "--key", ops).code == 0
    )
    res = parallel(
        {
            "skip": lambda: cli("registry", "promote", V12, "--to", "stable"),
            "bad_to": lambda: cli("registry", "promote", V12, "--to", "retired"),
            "unknown": lambda: cli("registry", "show", "nope"),
            "list": lambda: cli("registry", "list", "--format", "json"),
            "no_key": lambda: cli("registry", "request-release", V12),
        }
    )
    assert res["skip"].code == 2 and "canary rollout" in res["skip"].err
    assert res["bad_to"].code == 2
    assert res["unknown"].code == 2 and "not registered" in res["unknown"].err
    assert [v["status"] for v in json.loads(res["list"].out)] == ["stable", "staging"]
    assert res["no_key"].code == 2 and "API key" in res["no_key"].err
    assert cli("registry", "quarantine", V12, "--reason", "unsafe in review").code == 2
    q = cli("registry", "quarantine", V12, "--reason", "unsafe in review", "--key", ops)
    assert q.code == 0, q.err

    ok = cli("audit", "verify", "--format", "json")
    assert ok.code == 0 and json.loads(ok.out)["entries"] >= 4
    cp = cli("audit", "checkpoint", "--format", "json")
    assert cp.code == 0 and json.loads(cp.out)["seq"] == json.loads(ok.out)["head_seq"]
    assert (data / "secrets" / "audit.key").stat().st_mode & 0o777 == 0o600
    con = sqlite3.connect(data / "state.db")
    con.execute("DROP TRIGGER audit_log_no_update")
    con.execute("UPDATE audit_log SET actor = 'someone else' WHERE seq = 3")
    con.commit()
    con.close()
    res = parallel(
        {
            "verify": lambda: cli("audit", "verify"),
            "list": lambda: cli("audit", "list", "--format", "json"),
        }
    )
    assert res["verify"].code == 1 and "seq 3" in res["verify"].err
    entries = json.loads(res["list"].out)
    assert entries[0]["seq"] > entries[-1]["seq"]  # newest first
    assert {e["action"] for e in entries} >= {"registry.add", "registry.transition", "routes.set"}
    refused = [e for e in entries if e["action"] == "auth.refused"]
    assert {e["subject"] for e in refused} == {V11, V12}  # the refusals above, audited
