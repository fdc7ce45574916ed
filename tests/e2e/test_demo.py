"""The main job: `modelwarden demo` with the real all-MiniLM-L6-v2 model, as `make demo` runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_demo_writes_the_weekly_report_with_real_embeddings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELWARDEN_")}
    proc = subprocess.run(
        [str(BIN / "modelwarden"), "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    reports = list((tmp_path / "warden-data" / "reports").glob("weekly-*.md"))
    assert len(reports) == 1
    assert str(reports[0].relative_to(tmp_path)) in proc.stdout.replace("\n", "")
    text = reports[0].read_text()
    # The demo plants a bad canary at Plant_B: the report must say so and ask for the rollback.
    assert "sop-assistant-v1.2 at Plant_B" in text
    assert "Roll Plant_B back from sop-assistant-v1.2 to sop-assistant-v1.1" in text
    # Real model vectors were stored: 384 dimensions under the model's own name.
    emb = tmp_path / "warden-data" / "log" / "embedders.json"
    assert '"all-MiniLM-L6-v2": 384' in emb.read_text()
    for plant in ("Plant_A", "Plant_B", "Plant_C", "Plant_D"):
        assert plant in proc.stdout
    # The loop closes with the real model too: its safety check passes the fixed version's
    # answers, so the second key approves the release and the canary runs again.
    out = " ".join(proc.stdout.split())
    assert "SOP rule safety_incident_rate tripped" in out
    assert "approved by key 2 (quality-board)" in out
    assert "(fixed) released again" in out
