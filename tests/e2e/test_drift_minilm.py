"""Drift monitoring end to end with the real all-MiniLM-L6-v2 model, through the command line.

Three weeks of simulated traffic (a drift at Plant_C and a bad canary at Plant_B in the last
week); the reservoir baseline is built from the first two weeks, and the last week is compared
with it, for prompts and for responses, and written into the weekly report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent


def _run(data: Path, *args: str, code: int) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELWARDEN_")}
    proc = subprocess.run(
        [str(BIN / "modelwarden"), "--data", str(data), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == code, proc.stderr
    return json.loads(proc.stdout) if "--format" in args else proc.stdout


@pytest.mark.slow
def test_reservoir_baseline_and_response_drift_with_the_real_model(tmp_path: Path) -> None:
    data = tmp_path / "warden-data"
    _run(
        data,
        "simulate",
        "--days",
        "21",
        "--seed",
        "7",
        "--scenario",
        "drift,incident",
        "--end",
        "2026-11-23",
        "--ingest",
        "--format",
        "json",
        code=0,
    )
    built = _run(data, "baseline", "update", "--until", "2026-11-16", "--format", "json", code=0)
    assert {d["decision"] for d in built} == {"initial", "folded"}
    assert {d["scope"] for d in built} == {"all plants", "Plant_A", "Plant_B", "Plant_C", "Plant_D"}

    rows = _run(
        data,
        "drift",
        "--baseline",
        "reservoir",
        "--current",
        "2026-W47",
        "--format",
        "json",
        code=1,
    )
    assert {r["scope"]: r["status"] for r in rows} == {
        "all plants": "ALERT",
        "Plant_A": "OK",
        "Plant_B": "OK",
        "Plant_C": "ALERT",
        "Plant_D": "OK",
    }
    assert {r["embedder"] for r in rows} == {"all-MiniLM-L6-v2"}
    plant_c = next(r for r in rows if r["scope"] == "Plant_C")
    top = plant_c["explanation"]["topics"][0]
    # The planted topic family: battery and energy storage, absent before, about a third now.
    assert top["status"] == "new" and top["share_baseline"] == 0.0
    assert 0.2 < top["share_current"] < 0.45
    assert {"battery", "lithium"} & set(top["key_terms"])

    # Responses are embedded on the way; the canary's answers drift, and so do Plant_C's.
    answers = _run(
        data,
        "drift",
        "--kind",
        "response",
        "--by",
        "plant_id,model_version",
        "--format",
        "json",
        code=1,
    )
    assert {(r["scope"], r["model_version"]) for r in answers if r["status"] == "ALERT"} == {
        ("all plants", None),
        ("Plant_B", "sop-assistant-v1.2"),
        ("Plant_C", "sop-assistant-v1.1"),
    }

    report = tmp_path / "weekly.md"
    _run(data, "report", "--week", "2026-W47", "--out", str(report), code=0)
    text = report.read_text()
    assert "### Response drift" in text and "### Quality drift" in text
    assert "| Kind | Scope | 2026-W47 |" in text
    history = _run(data, "drift-history", "--plant", "Plant_C", "--format", "json", code=0)
    assert {(p["kind"], p["baseline"]) for p in history if p["kind"] != "quality"} >= {
        ("prompt", "reservoir"),
        ("prompt", "2026-11-02 .. 2026-11-16"),
        ("response", "2026-11-02 .. 2026-11-16"),
    }
