"""The deployment files say what is true: the annotated TOML loads and documents every setting,
the systemd unit passes systemd's own checks, and the cluster demo runs end to end."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelwarden.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TOML = ROOT / "deploy" / "modelwarden.toml"
UNIT = ROOT / "deploy" / "systemd" / "modelwarden.service"


def test_the_annotated_toml_loads_and_documents_every_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELWARDEN_CONFIG", str(TOML))
    for var in ("MODELWARDEN_DATA", "MODELWARDEN_EMBEDDER", "MODELWARDEN_STATE_URL"):
        monkeypatch.delenv(var, raising=False)
    s = Settings.from_env()
    assert s.data_dir == Path("/var/lib/modelwarden")
    assert s.state_url == "sqlite:////var/lib/modelwarden/state.db"
    assert (s.analytics_engine, s.spark_master) == ("duckdb", "local[2]")
    text = TOML.read_text()
    for name in Settings.model_fields:
        # Set, or shown commented out, each after a comment that explains it.
        m = re.search(rf"^(# )?{name} = ", text, flags=re.M)
        assert m, f"{name} is not in {TOML.name}"
        before = text[: m.start()].rstrip().splitlines()
        assert before and before[-1].startswith("#"), f"{name} has no comment"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    # systemd checks that ExecStart's program exists; stand a real one in for the venv's.
    unit = tmp_path / "modelwarden.service"
    unit.write_text(UNIT.read_text().replace("/opt/modelwarden/bin/modelwarden", "/bin/true"))
    res = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    assert "Unknown key" not in res.stderr and "Unknown lvalue" not in res.stderr, res.stderr
    text = UNIT.read_text()
    for hardening in ("DynamicUser=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/"):
        assert hardening in text


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(
    not Path("/usr/lib/postgresql/15/bin/initdb").exists(), reason="needs Debian's postgresql"
)
def test_the_cluster_demo_rolls_back_once_and_both_instances_report_the_same() -> None:
    env = {**os.environ, "MODELWARDEN": str(Path(sys.executable).parent / "modelwarden")}
    res = subprocess.run(
        [str(ROOT / "scripts" / "cluster-demo.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "rollout of sop-assistant-v1.2: rolled_back" in out
    assert re.search(r"instance a: \d+ canary users served by sop-assistant-v1.1", out)
    assert re.search(r"instance b: \d+ canary users served by sop-assistant-v1.1", out)
    assert out.count("INC-") == 1
    assert "identical from both instances" in out
    assert "audit log intact" in out
