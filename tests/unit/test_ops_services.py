"""The service functions the operations commands and the HTTP API share, called directly on a
real SQLite state store and data directory: routes from command-line options, notification
targets, audit checkpoints, the default plan and policy files, rollout operations, ticks and
policy checks over stored history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelwarden.errors import ConflictError, InputError, NotFoundError
from modelwarden.governance import audit, keys, registry
from modelwarden.governance import service as governance
from modelwarden.governance.keys import ForbiddenError
from modelwarden.ingest.core import Ingestor
from modelwarden.policy import service as policy_service
from modelwarden.policy.replay import ticks
from modelwarden.rollout import service as rollout_service
from modelwarden.safety.checker import SafetyChecker
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
URL11, URL12 = "http://127.0.0.1:9101", "http://127.0.0.1:9102"
T0 = datetime(2026, 11, 16, 8, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", embedder="hashing", embed_threads=1)


@pytest.fixture
def state(settings: Settings) -> StateStore:
    st = StateStore.of(settings)
    registry.add(st, V11, URL11, "cli:ops", status="stable")
    registry.add(st, V12, URL12, "cli:ops")
    return st


def test_routes_from_options_keep_the_live_stable_and_need_a_key_that_may(
    state: StateStore,
) -> None:
    operator, _ = keys.create_key(state, "operator", "ops")
    reviewer, _ = keys.create_key(state, "reviewer", "qa")
    with pytest.raises(InputError) as missing:
        governance.route_spec(state, governance.RouteOptions(canary=f"{V12}={URL12}"))
    assert missing.value.field == "weight"

    opts = governance.RouteOptions(canary=f"{V12}={URL12}", weight=10, plants="Plant_B, ")
    with pytest.raises(ForbiddenError, match="may not change routes"):
        governance.set_routes_with_key(state, reviewer, opts)
    (refused,) = audit.entries(state, action="routes.refused")
    assert refused.actor.endswith("(qa)") and refused.evidence["error"] == "forbidden"

    table = governance.set_routes_with_key(state, operator, opts)
    assert table["stable"] == {"version": V11, "url": URL11}  # kept from the live table
    assert table["canary"]["version"] == V12 and table["canary_weight"] == 10
    assert table["canary_plants"] == ["Plant_B"]
    assert table["created_by"].endswith("(ops)")
    assert governance.routes_now(state) == table
    history = governance.routes_history(state)
    assert [t["version"] for t in history] == [table["version"], table["version"] - 1]


def test_registry_answers_for_the_cli_and_the_api(settings: Settings, state: StateStore) -> None:
    assert [v["version"] for v in governance.list_versions(state, "staging")] == [V12]
    first = governance.quarantine_version(state, V12, "leaks", "cli:ops")
    again = governance.quarantine_version(state, V12, "leaks", "cli:ops")
    assert (first["status"], first["changed"], again["changed"]) == ("quarantined", True, False)
    assert governance.version_evidence(state, V12) == []
    with pytest.raises(NotFoundError):
        governance.version_evidence(state, "sop-assistant-v9")
    assert governance.list_incidents(state) == []
    with pytest.raises(NotFoundError):
        governance.close_incident(state, "INC-x", "cli:ops", "no such incident")
    with pytest.raises(NotFoundError):
        governance.rca_file(settings, "INC-x", "requests", "jsonl", state)


def test_notification_targets_are_saved_audited_and_overridden_by_the_environment(
    tmp_path: Path, state: StateStore
) -> None:
    env = Settings(
        data_dir=tmp_path / "data",
        embedder="hashing",
        notify_slack_channel="#from-env",
    )
    with pytest.raises(InputError, match="nothing to set"):
        governance.set_notification_targets(env, state, {"webhook_url": None}, "cli:ops")
    view = governance.set_notification_targets(
        env,
        state,
        {"webhook_url": "https://hooks.example.com/SECRET", "slack_channel": "#in-file"},
        "cli:ops",
    )
    assert view["saved"]["slack_channel"] == "#in-file"
    assert view["saved"]["channels"] == ["webhook"]
    assert view["targets"]["slack_channel"] == "#from-env"
    assert view["overridden"] == ["slack_channel"]
    assert (env.data_dir / "policy.yaml").exists()
    assert governance.notification_targets(env)["targets"] == view["targets"]
    (changed,) = audit.entries(state, action="policy.notify")
    assert set(changed.evidence["changed"]) == {"webhook_url", "slack_channel"}


def test_an_audit_checkpoint_is_written_signed_and_matched_by_verify(
    settings: Settings, state: StateStore, tmp_path: Path
) -> None:
    file = tmp_path / "checkpoints.jsonl"
    cp = governance.audit_checkpoint(settings, state, file)
    assert cp["file"] == str(file) and cp["notifications"] == 0  # no channel is configured
    head = audit.entries(state, newest_first=True, limit=1)[0]
    assert (cp["seq"], cp["hash"]) == (head.seq, head.hash)
    res = governance.verify_audit(state, file)
    assert res.ok and res.checkpoint is not None and res.checkpoint["seq"] == cp["seq"]
    assert governance.deliver_notifications(state) == {"deliveries": [], "all_sent": True}


def test_the_default_plan_and_policy_files_are_not_overwritten_without_force(
    settings: Settings, tmp_path: Path
) -> None:
    plan = tmp_path / "plans" / "plan.yaml"
    text = rollout_service.write_default_plan()
    assert rollout_service.write_default_plan(plan) == text == plan.read_text()
    with pytest.raises(InputError) as exists:
        rollout_service.write_default_plan(plan)
    assert exists.value.field == "out"
    plan.write_text("edited")
    rollout_service.write_default_plan(plan, force=True)
    assert plan.read_text() == text

    path = policy_service.write_default_policy(settings)
    assert path == settings.data_dir / "policy.yaml" and "SOP-MLOPS-003" in path.read_text()
    with pytest.raises(InputError, match="exists"):
        policy_service.write_default_policy(settings)
    assert "**SOP-MLOPS-003: Emergency Model Rollback**" in policy_service.sop_markdown(settings)
    drill = tmp_path / "drill.yaml"
    drill.write_text(path.read_text().replace("Emergency Model Rollback", "Drill Rollback"))
    assert "**SOP-MLOPS-003: Drill Rollback**" in policy_service.sop_markdown(settings, drill)


def test_rollout_operations_for_the_cli_and_the_api(
    settings: Settings, state: StateStore, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    rollout_service.write_default_plan(plan)
    view = rollout_service.start_rollout(settings, state, V12, "cli:ops", plan_path=plan, now=T0)
    r = view["rollout"]
    assert (r["version"], r["status"], r["step"]) == (V12, "running", 0)
    assert r["step_started_at"].startswith("2026-11-16T08:00")
    assert view["active"] and view["routes"]["canary"]["version"] == V12
    with pytest.raises(ConflictError):
        rollout_service.start_rollout(settings, state, V12, "cli:ops")

    with pytest.raises(InputError) as why:
        rollout_service.operate(settings, state, "pause", "cli:ops", " ")
    assert why.value.field == "reason"
    paused = rollout_service.operate(settings, state, "pause", "cli:ops", "", reason_required=False)
    assert paused["rollout"]["status"] == "paused"
    with pytest.raises(InputError) as op:
        rollout_service.operate(settings, state, "explode", "cli:ops", "why")
    assert op.value.field == "operation"

    ended = rollout_service.operate(settings, state, "abort", "cli:ops", "wrong build")
    assert ended["rollout"]["status"] == "aborted" and not ended["active"]
    assert ended["routes"]["canary"] is None
    assert registry.get(state, V12).status == "staging"
    assert [x["status"] for x in rollout_service.list_rollouts(state)] == ["aborted"]

    tick = rollout_service.tick(settings, state, T0 + timedelta(hours=1), notify_wait=0)
    assert (tick.report.action, tick.undelivered) == ("none", [])


def test_policy_check_and_replay_count_their_evaluations(settings: Settings) -> None:
    ingestor = Ingestor(LogStore(settings.log_dir), SafetyChecker())
    rows = [
        {
            "request_id": f"req-{i}",
            "timestamp": (T0 + timedelta(minutes=3 * i)).isoformat(),
            "plant_id": "Plant_A",
            "model_version": V11 if i % 2 else V12,
            "user_prompt": "What PPE for sulfuric acid?",
            "generated_response": "Wear nitrile gloves and goggles.",
            "latency_ms": 300.0,
        }
        for i in range(40)
    ]
    rep = ingestor.ingest_raw("requests", [(str(i), r) for i, r in enumerate(rows)], "t")
    assert rep.accepted == 40
    totals: list[int] = []
    done: list[int] = []
    run = policy_service.run_history(
        settings,
        "check",
        T0.isoformat(),
        (T0 + timedelta(hours=2)).isoformat(),
        step="15m",
        progress=done.append,
        on_total=totals.append,
    )
    assert run.watched and run.start == T0 and run.end == T0 + timedelta(hours=2)
    n = len(ticks(run.start, run.end, timedelta(minutes=15))) * len(run.watched)
    assert totals == [8 * len(run.watched)] and sum(done) == n
    assert run.found == []  # the same safe answers from both versions fire nothing
    assert run.to_dict()["fired"] == [] and run.to_dict()["step"] == "15m"

    replayed = policy_service.run_history(
        settings, "replay", T0.isoformat(), (T0 + timedelta(hours=2)).isoformat(), step="15m"
    )
    assert replayed.found == [] and replayed.watched == run.watched
    assert replayed.to_dict()["incidents"] == [] and "fired" not in replayed.to_dict()
    with pytest.raises(InputError) as step:
        policy_service.run_history(settings, "check", step="30s")
    assert step.value.field == "step"
    with pytest.raises(InputError) as mode:
        policy_service.run_history(settings, "simulate")
    assert mode.value.field == "mode" and "check, replay" in str(mode.value)
