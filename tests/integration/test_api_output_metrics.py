"""/metrics carries ModelWarden's outputs; the alert rules and dashboard under deploy/ use them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_world import V11, V12, build, start_live_rollout

from modelwarden.drift.history import drift_results
from modelwarden.rollout import controller
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    world = build(tmp_path_factory.mktemp("metrics") / "data")
    start_live_rollout(world)
    now = datetime.now(UTC)
    traffic = world["traffic"]
    traffic.add(V11, now - timedelta(minutes=50), now - timedelta(minutes=1), 100, seed=3)
    traffic.add(V12, now - timedelta(minutes=50), now - timedelta(minutes=1), 100, seed=4)
    rep = controller.tick(world["settings"], now, state=world["state"])
    assert rep.action == "hold" and rep.rules
    with world["state"].engine.begin() as con:
        for scope, status, p in (("all plants", "ALERT", 0.001), ("Plant_A", "OK", 0.4)):
            for end, st in (("2026-11-16", "OK"), ("2026-11-23", status)):
                con.execute(
                    drift_results.insert().values(
                        kind="prompt",
                        signal="embedding",
                        scope=scope,
                        model_version="",
                        window_start="2026-11-09",
                        window_end=end,
                        baseline="b",
                        method="mmd",
                        run_at=end,
                        statistic=1.0,
                        p_value=p,
                        status=st,
                    )
                )
    app = create_app(world["settings"], ServerConfig(run_controller=False))
    with ServerThread(app) as srv:
        yield {**world, "url": srv.url, "tick": rep}
    world["state"].close()


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_report_the_outputs(served: dict[str, Any]) -> None:
    text = httpx.get(served["url"] + "/metrics").text
    m = samples(text)
    assert m['modelwarden_drift_alert{kind="prompt",scope="all plants"}'] == 1.0
    assert m['modelwarden_drift_p_value{kind="prompt",scope="all plants"}'] == 0.001
    assert m['modelwarden_drift_alert{kind="prompt",scope="Plant_A"}'] == 0.0
    assert m["modelwarden_rollout_active"] == 1.0 and m["modelwarden_rollout_step"] == 1.0
    assert m["modelwarden_rollbacks_total"] == 1.0
    assert m['modelwarden_incidents_total{severity="rollback"}'] == 1.0
    assert m['modelwarden_incidents_open{severity="rollback"}'] == 1.0
    assert m["modelwarden_quarantined_versions"] == 3.0
    assert m["modelwarden_notification_failures_total"] == 0.0
    assert m['modelwarden_review_queue_depth{queue="q"}'] == 4.0
    safety = [r for r in served["tick"].rules if r["rule_id"] == "safety_incident_rate"]
    for r in safety:
        state = f'modelwarden_sop_rule_state{{rule="safety_incident_rate",scope="{r["scope"]}",state="{r["status"]}"}}'
        assert m[state] == 1.0
        if r["value"] is not None:
            key = f'modelwarden_sop_rule_value{{rule="safety_incident_rate",scope="{r["scope"]}"}}'
            assert m[key] == pytest.approx(r["value"])
    assert m['modelwarden_sop_rule_threshold{rule="safety_incident_rate"}'] == 1.0
    # Low cardinality: no version, request or user labels on the outputs.
    for name in m:
        if name.startswith(("modelwarden_drift", "modelwarden_sop", "modelwarden_incidents")):
            assert "request" not in name and "user" not in name and "model_version" not in name


def test_every_metric_the_alerts_and_dashboard_use_is_served(served: dict[str, Any]) -> None:
    served_names = {
        re.sub(r"_(total|bucket|count|sum|created)$", "", n.split("{")[0])
        for n in samples(httpx.get(served["url"] + "/metrics").text)
    } | {"modelwarden_gateway_request_duration_seconds", "modelwarden_gateway_requests"}
    rules = (ROOT / "deploy/prometheus/alerts.yml").read_text()
    dash = json.loads((ROOT / "deploy/grafana/modelwarden.json").read_text())
    exprs = [rules] + [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {
        re.sub(r"_(total|bucket)$", "", n)
        for e in exprs
        for n in re.findall(r"modelwarden_[a-z_]+", e)
    }
    assert used and used <= served_names, used - served_names


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    res = subprocess.run(
        [promtool, "check", "rules", str(ROOT / "deploy/prometheus/alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 8 rules found" in res.stdout
