"""The service functions the CLI and the HTTP API share, called directly on a real data directory.

Each is what one command (and, where there is one, one route) calls: the entry points only parse
and render, so what is decided here is decided once for both.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelwarden.drift import service as drift
from modelwarden.embed.service import embed_kinds, embed_missing
from modelwarden.errors import InputError, NotFoundError
from modelwarden.evals import service as evals
from modelwarden.evals.compare import GateSpec, default_gate
from modelwarden.governance.service import scorecard_text
from modelwarden.ingest.service import data_status, ingest_files, rejected, simulate_traffic
from modelwarden.kpi.compute import CHANGES, METRICS
from modelwarden.kpi.service import compute_kpis, kpi_query, kpi_table, rebuild_rollups
from modelwarden.report.service import weekly_report, write_weekly
from modelwarden.settings import Settings
from modelwarden.simulate.service import send_live

END = "2026-11-23"  # a Monday: three whole ISO weeks, 2026-W45..W47


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict, Path]:
    """Three weeks of seeded traffic written to JSONL and stored, prompts embedded (hashing)."""
    root = tmp_path_factory.mktemp("services")
    s = Settings(data_dir=root / "data", embedder="hashing", embed_threads=1)
    out = root / "traffic" / "logs.jsonl"
    summary = simulate_traffic(s, days=21, seed=5, end=END, scale=0.5, out=out, store=True)
    embed_kinds(s, "prompt")
    return s, summary, out


def _lines(path: Path) -> int:
    return sum(1 for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip())


def _plain(rows: list[dict]) -> list[dict]:
    """Rows to compare: NaN (a change with nothing before it) as None, floats to 9 places, as
    DuckDB sums floats in parallel and the last bits may differ from one query to the next."""
    return [
        {k: None if v != v else round(v, 9) if isinstance(v, float) else v for k, v in r.items()}
        for r in rows
    ]


# ---- ingest and simulate -----------------------------------------------------------------------
def test_simulated_traffic_is_written_and_stored_alike(
    stored: tuple[Settings, dict, Path],
) -> None:
    s, summary, out = stored
    assert summary["files"] == [
        str(out),
        str(out.with_name("logs.feedback.jsonl")),
        str(out.with_name("logs.escalations.jsonl")),
    ]
    assert _lines(out) == summary["requests"]
    assert summary["ingested"] == [
        {"kind": "requests", "accepted": summary["requests"], "duplicates": 0, "rejected": 0},
        {"kind": "feedback", "accepted": summary["feedback"], "duplicates": 0, "rejected": 0},
        {"kind": "escalations", "accepted": summary["escalations"], "duplicates": 0, "rejected": 0},
    ]
    status = data_status(s)
    assert (status["requests"], status["feedback"], status["escalations"]) == (
        summary["requests"],
        summary["feedback"],
        summary["escalations"],
    )
    assert rejected(s) == []


def test_simulated_traffic_needs_somewhere_to_go(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "data", embedder="hashing")
    with pytest.raises(InputError) as err:
        simulate_traffic(s, days=1)
    assert err.value.field == "out"
    assert not (tmp_path / "data" / "requests").exists()


def test_ingesting_files_embeds_what_arrived_and_says_each_stage(
    stored: tuple[Settings, dict, Path], tmp_path: Path
) -> None:
    _, summary, out = stored
    s = Settings(data_dir=tmp_path / "data", embedder="hashing", embed_threads=1)
    stages: list[str] = []
    first = ingest_files(s, [str(out)], "requests", embed=True, on_stage=stages.append)
    assert stages == ["ingesting requests", "embedding prompts (hashing-384)"]
    assert (first["read"], first["accepted"], first["duplicates"], first["rejected"]) == (
        summary["requests"],
        summary["requests"],
        0,
        0,
    )
    assert first["embedding"]["kind"] == "prompt"
    assert first["embedding"]["missing"] == first["embedding"]["stored"] == summary["requests"]
    again = ingest_files(s, [str(out)], "requests", embed=True)
    assert (again["accepted"], again["duplicates"]) == (0, summary["requests"])
    assert again["embedding"]["missing"] == 0
    # Feedback is not embedded, even when asked.
    fb = ingest_files(s, [str(out.with_name("logs.feedback.jsonl"))], "feedback", embed=True)
    assert fb["accepted"] == summary["feedback"] and "embedding" not in fb


def test_embedding_all_kinds_reports_each(stored: tuple[Settings, dict, Path]) -> None:
    s, summary, _ = stored
    stages: list[str] = []
    reports = embed_kinds(s, "all", on_stage=stages.append)
    assert stages == ["embedding prompts (hashing-384)", "embedding responses (hashing-384)"]
    assert [(r.kind, r.missing) for r in reports] == [
        ("prompt", 0),
        ("response", summary["requests"]),
    ]
    with pytest.raises(InputError) as err:
        embed_kinds(s, "answers")
    assert err.value.field == "kind"


def test_embedding_in_slices_of_distinct_texts_leaves_the_rest_missing(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "data", embedder="hashing", embed_threads=1)
    summary = simulate_traffic(s, days=7, seed=3, end=END, scale=0.2, store=True)
    first = embed_missing(s, "prompt", limit=5)
    assert (first.missing, first.unique_texts) == (summary["requests"], 5)
    assert 5 <= first.stored < summary["requests"]
    rest = embed_missing(s, "prompt")
    assert rest.missing == summary["requests"] - first.stored
    assert first.stored + rest.stored == summary["requests"]
    assert embed_missing(s, "prompt").missing == 0
    with pytest.raises(InputError) as err:
        embed_missing(s, "prompt", limit=0)
    assert err.value.field == "limit"


def test_live_traffic_needs_an_http_url() -> None:
    with pytest.raises(InputError) as err:
        send_live("127.0.0.1:8400", rate=1.0, duration=0.1)
    assert err.value.field == "to_gateway"


# ---- KPIs --------------------------------------------------------------------------------------
def test_kpi_table_is_the_query_and_its_rows(stored: tuple[Settings, dict, Path]) -> None:
    s, summary, _ = stored
    kt = kpi_table(s, "2026-11-09", END, "week", "plant_id,model_version")
    assert kt.columns == ["window_start", "plant_id", "model_version", *METRICS, *CHANGES]
    direct = compute_kpis(s, kpi_query("2026-11-09", END, "week", "plant_id,model_version"))
    assert _plain(kt.rows) == _plain(direct)
    assert {r["window_start"].date().isoformat() for r in kt.rows} == {"2026-11-09", "2026-11-16"}
    overall = kpi_table(s, window="all", by="")
    assert len(overall.rows) == 1 and overall.rows[0]["requests"] == summary["requests"]
    with pytest.raises(InputError) as err:
        kpi_table(s, window="month")
    assert err.value.field == "window"


def test_rebuilt_rollups_count_every_request(stored: tuple[Settings, dict, Path]) -> None:
    s, summary, _ = stored
    rep = rebuild_rollups(s)
    assert rep["requests"] == summary["requests"]
    assert rep["rows"] > 0


# ---- drift -------------------------------------------------------------------------------------
def test_run_drift_checks_its_input_before_reading(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "empty", embedder="hashing")
    for kind, method, by, field in (
        ("answers", "suite", "plant_id", "kind"),
        ("prompt", "guess", "plant_id", "method"),
        ("prompt", "suite", "route", "by"),
    ):
        with pytest.raises(InputError) as err:
            drift.run_drift(s, "2026-W46", "2026-W47", kind=kind, method=method, by=by)
        assert err.value.field == field


def test_files_are_compared_only_when_allowed(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "empty", embedder="hashing")
    rng = np.random.default_rng(0)
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, rng.normal(size=(40, 8)).astype(np.float32))
    np.save(b, rng.normal(size=(30, 8)).astype(np.float32))
    run = drift.run_drift(s, str(a), str(a), method="seed", files=True)
    assert run.title == f"Drift: {a} → {a}"
    assert [(r["scope"], r["n_baseline"], r["n_current"], r["status"]) for r in run.rows] == [
        ("files", 40, 40, "OK")
    ]
    assert run.rows[0]["score"] == pytest.approx(0.0, abs=1e-6)
    assert not run.alert
    both = drift.run_drift(s, str(a), str(b), method="seed", files=True)
    assert (both.rows[0]["n_baseline"], both.rows[0]["n_current"]) == (40, 30)
    # The HTTP API never reads the server's files: a path is a (bad) window there.
    with pytest.raises(InputError) as err:
        drift.run_drift(s, str(a), str(b))
    assert err.value.field == "baseline"


def test_a_window_run_is_titled_and_kept_in_the_history(
    stored: tuple[Settings, dict, Path],
) -> None:
    s, _, _ = stored
    run = drift.run_drift(s, "2026-W46", "2026-W47", by="", method="centroid_cosine")
    assert run.title == "Drift (prompts): 2026-11-09 .. 2026-11-16 → 2026-11-16 .. 2026-11-23"
    assert [(r["scope"], r["method"]) for r in run.rows] == [("all plants", "centroid_cosine")]
    points = drift.drift_history(s, kind="prompt", method="centroid_cosine", since="2026-11-16")
    assert [(p["scope"], p["window_start"][:10], p["window_end"][:10]) for p in points] == [
        ("all plants", "2026-11-16", "2026-11-23")
    ]
    assert points[0]["p_value"] == pytest.approx(run.rows[0]["p_value"])
    assert drift.drift_history(s, kind="prompt", method="centroid_cosine", until="2026-11-20") == []
    with pytest.raises(InputError) as err:
        drift.drift_history(s, kind="answers")
    assert err.value.field == "kind"
    with pytest.raises(InputError) as err:
        drift.drift_history(s, since="last tuesday")
    assert err.value.field == "since"


def test_a_reservoir_is_pinned_unpinned_and_reset(stored: tuple[Settings, dict, Path]) -> None:
    s, _, _ = stored
    rows = drift.update_baseline(s, kind="prompt", plant="Plant_A", size=50)
    assert [(r["scope"], r["window"][:10]) for r in rows if r["scope"] == "Plant_A"] == [
        ("Plant_A", "2026-11-02"),
        ("Plant_A", "2026-11-09"),
        ("Plant_A", "2026-11-16"),
    ]
    who = {"scope": "Plant_A", "kind": "prompt", "embedder": "hashing-384"}
    assert drift.pin_baseline(s, "prompt", "Plant_A") == {**who, "pinned": True}
    assert [r["pinned"] for r in drift.baseline_rows(s) if r["scope"] == "Plant_A"] == [True]
    assert drift.pin_baseline(s, "prompt", "Plant_A", pinned=False) == {**who, "pinned": False}
    assert drift.reset_baseline(s, "prompt", "Plant_A") == {**who, "reset": True}
    assert [r for r in drift.baseline_rows(s) if r["scope"] == "Plant_A"] == []
    with pytest.raises(NotFoundError):
        drift.reset_baseline(s, "prompt", "Plant_A")
    with pytest.raises(NotFoundError):
        drift.pin_baseline(s, "prompt", "Plant_A")
    with pytest.raises(InputError) as err:
        drift.reset_baseline(s, "quality")
    assert err.value.field == "kind"


# ---- report ------------------------------------------------------------------------------------
def test_the_weekly_report_reads_the_same_as_json_markdown_and_file(
    stored: tuple[Settings, dict, Path],
) -> None:
    s, _, _ = stored
    data = weekly_report(s, "2026-W47", "json")
    assert data["week"] == "2026-W47"
    json.dumps(data, default=str)
    text = weekly_report(s, "2026-W47", "md")
    assert text.startswith("# Weekly Manufacturing Copilot Performance Report\n")
    assert "**Week:** 2026-W47 (2026-11-16 to 2026-11-22)" in text
    path = write_weekly(s, "2026-W47")
    assert path == s.reports_dir / "weekly-2026-W47.md"
    assert path.read_text(encoding="utf-8").splitlines()[:4] == text.splitlines()[:4]
    with pytest.raises(InputError) as err:
        weekly_report(s, "2026-W47", "pdf")
    assert err.value.field == "format"


# ---- evaluations -------------------------------------------------------------------------------
def test_starter_set_and_default_gate_are_written_once(tmp_path: Path) -> None:
    golden = tmp_path / "eval" / "golden.jsonl"
    gs = evals.write_starter_set(golden)
    assert _lines(golden) == len(gs) + 1  # a header line, then one line per item
    with pytest.raises(InputError) as err:
        evals.write_starter_set(golden)
    assert err.value.field == "out"
    assert evals.write_starter_set(golden, force=True).content_hash == gs.content_hash
    gate = evals.write_default_gate(tmp_path / "gate.yaml")
    assert GateSpec.load(gate) == default_gate()
    with pytest.raises(InputError):
        evals.write_default_gate(gate)


def test_missing_runs_are_named(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "data", embedder="hashing")
    with pytest.raises(NotFoundError) as err:
        evals.run_detail(s, "nightly")
    assert err.value.field == "run"
    with pytest.raises(NotFoundError):
        evals.compare(s, "nightly", "candidate")
    with pytest.raises(InputError) as bad:
        scorecard_text(s, "v1", "pdf")
    assert bad.value.field == "format"
