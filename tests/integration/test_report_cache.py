"""The weekly report keeps its drift rows until the store under them changes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from modelwarden.drift.history import read_history
from modelwarden.ingest.core import Ingestor
from modelwarden.report.cache import CACHE_DIR, store_fingerprint
from modelwarden.report.service import build_weekly_report, render_markdown
from modelwarden.safety.service import safety_checker
from modelwarden.settings import Settings
from modelwarden.store.reads import open_store


def _run_at(s: Settings) -> set[str]:
    return {p["run_at"] for p in read_history(s, kind="prompt") if p["scope"] == "all plants"}


def _without_date(rep: Any) -> str:
    return "\n".join(line for line in render_markdown(rep).splitlines() if "**Date:**" not in line)


def test_an_unchanged_store_reuses_the_rows_and_a_new_record_recomputes_them(
    seeded_data_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "warden-data"
    shutil.copytree(seeded_data_dir, data)
    s = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    first = build_weekly_report(s, "2026-W47", embedder="hashing")
    kept = sorted((data / CACHE_DIR).glob("*.json"))
    assert len(kept) >= 3  # prompt, response and quality rows
    ran = _run_at(s)

    fp = store_fingerprint(s)
    second = build_weekly_report(s, "2026-W47", embedder="hashing")
    assert store_fingerprint(s) == fp
    assert _run_at(s) == ran, "the drift suite did not run again"
    assert _without_date(second) == _without_date(first)
    assert second.drift == first.drift and second.quality_drift == first.quality_drift

    overall = next(r for r in first.drift if r["scope"] == "all plants")
    ingest = Ingestor(open_store(s), safety_checker(s))
    rep = ingest.ingest_raw(
        "requests",
        [
            (
                "late record",
                {
                    "request_id": "late-arrival-1",
                    "timestamp": "2026-11-20T10:00:00Z",
                    "plant_id": "Plant_A",
                    "model_version": "sop-assistant-v1.1",
                    "user_prompt": "How do I lock out the conveyor before cleaning?",
                    "generated_response": "Isolate, lock and tag every energy source.",
                    "latency_ms": 250.0,
                },
            )
        ],
        "test",
    )
    assert rep.accepted == 1
    assert store_fingerprint(s) != fp
    third = build_weekly_report(s, "2026-W47", embedder="hashing")
    again = next(r for r in third.drift if r["scope"] == "all plants")
    assert again["n_current"] == overall["n_current"] + 1
    assert _run_at(s) != ran
    # The KPI tables are kept under the same fingerprint: they count the new record too.
    assert third.overall["requests"] == first.overall["requests"] + 1
    plant_a = {p["plant_id"]: p["requests"] for p in first.plants}["Plant_A"]
    assert {p["plant_id"]: p["requests"] for p in third.plants}["Plant_A"] == plant_a + 1
    v11 = {(v["plant_id"], v["model_version"]): v["requests"] for v in third.versions}
    assert v11[("Plant_A", "sop-assistant-v1.1")] == 1 + next(
        v["requests"]
        for v in first.versions
        if (v["plant_id"], v["model_version"]) == ("Plant_A", "sop-assistant-v1.1")
    )


WARM_REPORT = """
import sys
from pathlib import Path
from modelwarden.report.service import build_weekly_report, write_report
from modelwarden.settings import Settings

s = Settings(data_dir=Path(sys.argv[1]), embedder="hashing", embed_threads=1)
rep = build_weekly_report(s, "2026-W47", embedder="hashing")
write_report(rep, Path(sys.argv[2]), s)
heavy = ("ibis", "duckdb", "pandas", "pyarrow", "torch", "sentence_transformers")
print(",".join(sorted(m for m in heavy if m in sys.modules)))
"""


def test_a_report_on_an_unchanged_store_runs_no_query(
    seeded_data_dir: Path, tmp_path: Path
) -> None:
    """Everything the report reads from the log store is kept: a second report, in a fresh
    process, loads neither the query engine nor the embedder, and writes the same pack."""
    data = tmp_path / "warden-data"
    shutil.copytree(seeded_data_dir, data)
    s = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    first = build_weekly_report(s, "2026-W47", embedder="hashing")
    out = tmp_path / "warm.md"
    run = subprocess.run(
        [sys.executable, "-c", WARM_REPORT, str(data), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == ""  # none of the heavy modules was imported
    warm = out.read_text(encoding="utf-8")
    assert [ln for ln in warm.splitlines() if "**Date:**" not in ln] == [
        ln for ln in render_markdown(first).splitlines() if "**Date:**" not in ln
    ]
