"""The real ``modelwarden`` command on real data directories: ingest, KPIs, drift and the report.

Every command starts a fresh process, so commands that do not depend on each other run side by
side in module fixtures and the tests assert on their results.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelwarden.kpi.compute import CHANGES, METRICS
from modelwarden.simulate.traffic import SimulatedData
from modelwarden.store.logstore import LogStore

END = "2026-11-23"
WEEK = "2026-W47"
WEEK_SINCE, WEEK_UNTIL = "2026-11-16", "2026-11-23"
KPI_ARGS = ("kpis", "--window", "day", "--by", "plant_id,model_version")
PARALLEL = 3


def _good(i: int, **kw: Any) -> dict[str, Any]:
    row = {
        "request_id": f"cli-{i:03d}",
        "timestamp": f"2026-11-02T10:{i:02d}:00Z",
        "plant_id": "Plant_A",
        "model_version": "sop-assistant-v1.1",
        "user_prompt": "What is the lubrication schedule for the main conveyor?",
        "generated_response": "Every 200 operating hours with ISO VG 46 oil.",
        "latency_ms": 200 + i,
        "human_feedback_score": 4,
    }
    row.update(kw)
    return row


def _no_traceback(*texts: str) -> None:
    for t in texts:
        assert "Traceback" not in t


def _flat(text: str) -> str:
    """Text with line wrapping undone, for messages that a console may wrap."""
    return " ".join(text.split())


def _stored(data: Path, kind: str) -> list[dict[str, Any]]:
    files = LogStore(data / "log").files(kind)
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist() if files else []


def _run_all(run_cli: Any, jobs: dict[str, tuple[tuple[str, ...], dict[str, Any]]]) -> dict:
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = {name: pool.submit(run_cli, *args, **kw) for name, (args, kw) in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


# ---- simulate → ingest → re-ingest ---------------------------------------------------------------
@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory, run_cli: Any) -> dict[str, Any]:
    """Simulate to files with the CLI, ingest the three files, then ingest the requests again."""
    root = tmp_path_factory.mktemp("flow")
    data = root / "warden-data"
    out = root / "traffic" / "logs.jsonl"
    res: dict[str, Any] = {"root": root, "data": data, "out": out}
    res["simulate"] = run_cli(
        "simulate",
        "--days",
        "21",
        "--seed",
        "3",
        "--scenario",
        "drift,incident",
        "--end",
        END,
        "--out",
        str(out),
        "--format",
        "json",
        data=data,
    )
    res["requests"] = run_cli("ingest", str(out), "--format", "json", data=data)
    res.update(
        _run_all(
            run_cli,
            {
                "feedback": (
                    ("ingest", "--kind", "feedback", str(out.with_name("logs.feedback.jsonl"))),
                    {"data": data},
                ),
                "escalations": (
                    (
                        "ingest",
                        "--kind",
                        "escalations",
                        str(out.with_name("logs.escalations.jsonl")),
                        "--format",
                        "json",
                    ),
                    {"data": data},
                ),
            },
        )
    )
    res["again"] = run_cli("ingest", str(out), data=data)
    res["kpis"] = run_cli(*KPI_ARGS, "--format", "json", data=data)
    return res


def test_simulate_writes_the_seeded_traffic(flow: dict[str, Any], sim_data: SimulatedData) -> None:
    code, out, err = flow["simulate"]
    assert code == 0, err
    summary = json.loads(out)
    assert summary["scenarios"] == ["drift", "incident"]
    assert (summary["requests"], summary["feedback"], summary["escalations"]) == (
        len(sim_data.requests),
        len(sim_data.feedback),
        len(sim_data.escalations),
    )
    base = flow["out"]
    assert summary["files"] == [
        str(base),
        str(base.with_name("logs.feedback.jsonl")),
        str(base.with_name("logs.escalations.jsonl")),
    ]
    # The command writes exactly what the library generates for the same seed and end.
    for path, rows in zip(
        summary["files"], (sim_data.requests, sim_data.feedback, sim_data.escalations), strict=True
    ):
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        assert [json.loads(ln) for ln in lines] == rows


def _table_row(out: str, first: str) -> list[str]:
    row = next(ln for ln in out.splitlines() if ln.strip("│| ").startswith(first))
    return [c.strip() for c in row.replace("│", "|").split("|") if c.strip()]


def test_ingest_prints_counts(flow: dict[str, Any], sim_data: SimulatedData) -> None:
    code, out, err = flow["requests"]
    assert code == 0, err
    rep = json.loads(out)
    assert rep["kind"] == "requests"
    assert rep["sources"] == [str(flow["out"])]
    n = len(sim_data.requests)
    assert (rep["read"], rep["accepted"], rep["duplicates"], rep["rejected"]) == (n, n, 0, 0)
    assert rep["first_rejections"] == []

    code, out, err = flow["feedback"]
    assert code == 0, err
    nf = len(sim_data.feedback)
    # kind, read, accepted, duplicates, rejected, embeddings stored
    assert _table_row(out, "feedback") == ["feedback", str(nf), str(nf), "0", "0", "0"]

    code, out, err = flow["escalations"]
    assert code == 0, err
    rep = json.loads(out)
    ne = len(sim_data.escalations)
    assert (rep["kind"], rep["read"], rep["accepted"], rep["rejected"]) == (
        "escalations",
        ne,
        ne,
        0,
    )
    assert len(_stored(flow["data"], "escalations")) == ne


def test_reingest_adds_nothing(flow: dict[str, Any], sim_data: SimulatedData) -> None:
    n = len(sim_data.requests)
    code, out, err = flow["again"]
    assert code == 0, err
    assert _table_row(out, "requests") == ["requests", str(n), "0", str(n), "0", "0"]
    assert f"{n} record(s) were already stored and were not added again." in _flat(out)
    assert len(_stored(flow["data"], "requests")) == n


def test_cli_ingest_stores_what_the_library_stores(
    flow: dict[str, Any], seeded: dict[str, Any]
) -> None:
    a, b = flow["kpis"], seeded["kpis_day_json"]
    assert a.code == b.code == 0, a.err + b.err
    rows_a, rows_b = json.loads(a.out), json.loads(b.out)
    assert len(rows_a) == len(rows_b) == 21 * 4 + 4  # days × plants, and four canary days
    for x, y in zip(rows_a, rows_b, strict=True):
        assert x.keys() == y.keys()
        for k, v in x.items():
            # Sums in another order may differ in the last bit.
            assert v == (pytest.approx(y[k], rel=1e-12) if isinstance(v, float) else y[k]), k


# ---- bad records ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, run_cli: Any) -> dict[str, Any]:
    """A JSONL file where bad records sit between good ones, ingested, then listed."""
    root = tmp_path_factory.mktemp("mixed")
    data = root / "warden-data"
    path = root / "mixed.jsonl"
    lines = [
        json.dumps(_good(1)),
        json.dumps(_good(2, latency_ms=-1)),
        json.dumps(_good(3)),
        '{"request_id": "cli-004", "timestamp": ',
        json.dumps(_good(5, timestamp="2026-11-02T10:05:00")),
        json.dumps([_good(6)]),
        json.dumps(_good(7, human_feedback_score=6)),
        "",
        json.dumps(_good(9, route="canary")),
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"plant_id": "Plant_\xff"}\n')
    ingest = run_cli("ingest", str(path), data=data)
    listed = run_cli("rejected", "--format", "json", data=data)
    return {"path": path, "data": data, "ingest": ingest, "rejected": listed}


def test_bad_records_are_kept_apart_and_listed(mixed: dict[str, Any]) -> None:
    code, out, err = mixed["ingest"]
    assert code == 2
    _no_traceback(out, err)
    assert _table_row(out, "requests") == ["requests", "9", "3", "0", "6", "0"]
    assert sorted(r["request_id"] for r in _stored(mixed["data"], "requests")) == [
        "cli-001",
        "cli-003",
        "cli-009",
    ]

    code, out, err = mixed["rejected"]
    assert code == 0, err
    rows = json.loads(out)
    src = str(mixed["path"])
    assert {(r["source"], r["location"], r["field"]) for r in rows} == {
        (src, "line 2", "latency_ms"),
        (src, "line 4", "(line)"),
        (src, "line 5", "timestamp"),
        (src, "line 6", "(record)"),
        (src, "line 7", "human_feedback_score"),
        (src, "line 10", "(line)"),
    }
    reasons = {r["location"]: r["reason"] for r in rows}
    assert reasons["line 2"] == "input should be greater than or equal to 0"
    assert reasons["line 4"].startswith("malformed JSON")
    assert reasons["line 5"].startswith("timestamp must be ISO-8601 with a time zone")
    assert reasons["line 6"] == "a record must be a JSON object"
    assert reasons["line 7"] == "input should be less than or equal to 5"
    assert reasons["line 10"].startswith("not valid UTF-8 (byte 0xff")
    assert {r["kind"] for r in rows} == {"requests"}
    assert {r["location"]: r["record_key"] for r in rows}["line 2"] == "cli-002"


def test_rejections_are_explained_on_stderr(mixed: dict[str, Any]) -> None:
    code, out, err = mixed["ingest"]
    assert code == 2
    _no_traceback(out, err)
    # The table of rejected lines goes to stdout; whoever reads stderr must learn why it failed.
    assert "rejected" in err.lower()
    assert "modelwarden rejected" in _flat(err) or str(mixed["path"]) in _flat(err)


# ---- unusable inputs and other formats -----------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, run_cli: Any) -> dict[str, Any]:
    """One data directory per case; all cases run side by side."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "logs").mkdir()
    (root / "logs.txt").write_text(json.dumps(_good(1)) + "\n", encoding="utf-8")

    csv_path = root / "logs.csv"
    with open(csv_path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "request_id",
                "timestamp",
                "plant_id",
                "model_version",
                "user_prompt",
                "generated_response",
                "latency_ms",
                "human_feedback_score",
                "prompt_embedding",
            ]
        )
        w.writerow(
            [
                "c1",
                "2026-11-02T10:00:00Z",
                "Plant_A",
                "v1",
                "Torque, for M12 bolts?",
                "85 Nm, star pattern.",
                "210.5",
                "5",
                "[0.1, 0.2, 0.3]",
            ]
        )
        w.writerow(
            [
                "c2",
                "2026-11-02T11:00:00+01:00",
                "Plant_B",
                "v1",
                'Grease "EP2"?',
                "Yes,\nEP2 lithium.",
                "300",
                "",
                "[0.3, 0.2, 0.1]",
            ]
        )
        w.writerow(["c3", "2026-11-02T12:00:00Z", "Plant_B", "v1", "q", "a", "-4", "", ""])

    seed_csv = root / "seed.csv"
    seed_csv.write_text(
        "request_id,timestamp,plant_id,model_version,user_prompt,generated_response,"
        "latency_ms,human_feedback_score,contains_safety_keyword\n"
        "s1,2026-11-02T10:05:00Z,Plant_B,sop-assistant-v1.1,Lube schedule?,Every 200 h.,250,4,"
        "false\n"
        "s2,2026-11-02T10:06:00Z,Plant_B,sop-assistant-v1.1,Lube schedule?,Every 200 h.,250,4,"
        "True\n",
        encoding="utf-8",
    )

    pq_path = root / "logs.parquet"
    rows = [
        {
            **_good(i),
            "timestamp": datetime(2026, 11, 2, 10, i, tzinfo=UTC),
            "latency_ms": float(200 + i),
            "prompt_embedding": [0.1 * i, 0.2, 0.3],
        }
        for i in range(1, 5)
    ]
    rows[2]["latency_ms"] = float("nan")
    schema = pa.schema(
        [
            ("request_id", pa.string()),
            ("timestamp", pa.timestamp("ms", tz="UTC")),
            ("plant_id", pa.string()),
            ("model_version", pa.string()),
            ("user_prompt", pa.string()),
            ("generated_response", pa.string()),
            ("latency_ms", pa.float64()),
            ("human_feedback_score", pa.int32()),
            ("prompt_embedding", pa.list_(pa.float32())),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), pq_path)

    stdin = "".join(json.dumps(_good(i)) + "\n" for i in range(1, 4))

    def d(name: str) -> dict[str, Any]:
        return {"data": root / f"data-{name}"}

    jobs = {
        "missing": (("ingest", str(root / "nope.jsonl"), "--format", "json"), d("missing")),
        "extension": (("ingest", str(root / "logs.txt")), d("extension")),
        "directory": (("ingest", str(root / "logs")), d("directory")),
        "csv": (("ingest", str(csv_path), "--format", "json"), d("csv")),
        "seed_csv": (("ingest", str(seed_csv), "--format", "json"), d("seed_csv")),
        "parquet": (("ingest", str(pq_path), "--format", "json"), d("parquet")),
        "stdin": (("ingest", "-", "--format", "json"), {**d("stdin"), "stdin": stdin}),
    }
    return {"root": root, "csv_path": csv_path, **_run_all(run_cli, jobs)}


def test_missing_file_is_a_json_error(inputs: dict[str, Any]) -> None:
    code, out, err = inputs["missing"]
    assert code == 2
    assert out == ""
    assert json.loads(err) == {
        "error": {
            "code": "bad_input",
            "field": "path",
            "message": f"{inputs['root'] / 'nope.jsonl'}: no such file",
        }
    }
    assert not (inputs["root"] / "data-missing" / "log" / "requests").exists()


def test_unknown_extension_is_a_clear_error(inputs: dict[str, Any]) -> None:
    code, out, err = inputs["extension"]
    assert code == 2
    _no_traceback(out, err)
    assert _flat(err) == (
        f"error (path): {inputs['root'] / 'logs.txt'}: unknown file type; "
        "use .jsonl, .csv or .parquet (or - for JSONL on stdin)"
    )
    assert not (inputs["root"] / "data-extension" / "log" / "requests").exists()


def test_directory_is_a_clear_error(inputs: dict[str, Any]) -> None:
    code, out, err = inputs["directory"]
    assert code == 2
    _no_traceback(out, err)
    assert "directory" in err


def test_csv_ingest(inputs: dict[str, Any]) -> None:
    code, out, err = inputs["csv"]
    assert code == 2
    _no_traceback(out, err)
    rep = json.loads(out)
    assert (rep["read"], rep["accepted"], rep["rejected"], rep["embeddings_stored"]) == (3, 2, 1, 2)
    assert [(r["source"], r["location"], r["field"]) for r in rep["first_rejections"]] == [
        (str(inputs["csv_path"]), "row 3", "latency_ms")
    ]
    got = {r["request_id"]: r for r in _stored(inputs["root"] / "data-csv", "requests")}
    assert sorted(got) == ["c1", "c2"]
    assert (got["c1"]["latency_ms"], got["c1"]["human_feedback_score"]) == (210.5, 5)
    assert got["c2"]["user_prompt"] == 'Grease "EP2"?'
    assert got["c2"]["generated_response"] == "Yes,\nEP2 lithium."
    assert got["c2"]["timestamp"] == datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    assert got["c2"]["human_feedback_score"] is None


def test_csv_with_the_seed_safety_flag(inputs: dict[str, Any]) -> None:
    # The seed's log schema has contains_safety_keyword, and CSV writes booleans as text.
    code, out, err = inputs["seed_csv"]
    _no_traceback(out, err)
    rep = json.loads(out)
    assert (code, rep["accepted"], rep["rejected"]) == (0, 2, 0), rep["first_rejections"]
    flags = {
        r["request_id"]: r["contains_safety_keyword"]
        for r in _stored(inputs["root"] / "data-seed_csv", "requests")
    }
    assert flags == {"s1": False, "s2": True}


def test_parquet_ingest(inputs: dict[str, Any]) -> None:
    code, out, err = inputs["parquet"]
    assert code == 2
    _no_traceback(out, err)
    rep = json.loads(out)
    assert (rep["read"], rep["accepted"], rep["rejected"], rep["embeddings_stored"]) == (4, 3, 1, 3)
    assert [(r["location"], r["field"], r["record_key"]) for r in rep["first_rejections"]] == [
        ("row 3", "latency_ms", "cli-003")
    ]
    got = sorted(
        _stored(inputs["root"] / "data-parquet", "requests"), key=lambda r: r["request_id"]
    )
    assert [(r["request_id"], r["latency_ms"]) for r in got] == [
        ("cli-001", 201.0),
        ("cli-002", 202.0),
        ("cli-004", 204.0),
    ]


def test_stdin_ingest(inputs: dict[str, Any]) -> None:
    code, out, err = inputs["stdin"]
    assert code == 0, err
    rep = json.loads(out)
    assert (rep["sources"], rep["read"], rep["accepted"]) == (["-"], 3, 3)
    got = _stored(inputs["root"] / "data-stdin", "requests")
    assert sorted(r["request_id"] for r in got) == ["cli-001", "cli-002", "cli-003"]
    assert {r["source"] for r in got} == {"-"}


# ---- KPIs, drift and the report on the seeded store -----------------------------------------------
@pytest.fixture(scope="module")
def seeded(
    tmp_path_factory: pytest.TempPathFactory, run_cli: Any, seeded_data_dir: Path
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("report") / "reports" / "weekly.md"
    bad_out = out.with_name("never.md")
    kw = {"data": seeded_data_dir}
    jobs: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
        "kpis_day_json": ((*KPI_ARGS, "--format", "json"), kw),
        "kpis_day_csv": ((*KPI_ARGS, "--format", "csv"), kw),
        "kpis_day_table": (KPI_ARGS, kw),
        "kpis_week_json": (
            (
                "kpis",
                "--since",
                WEEK_SINCE,
                "--until",
                WEEK_UNTIL,
                "--window",
                "week",
                "--by",
                "plant_id",
                "--format",
                "json",
            ),
            kw,
        ),
        "drift_alert": (("drift", "--method", "seed", "--format", "json"), kw),
        "drift_suite": (("drift", "--plant", "Plant_C", "--format", "json"), kw),
        "drift_ok": (("drift", "--method", "seed", "--threshold", "0.2", "--format", "json"), kw),
        "drift_bad": (("drift", "--baseline", "2026-W45", "--current", "yesterday"), kw),
        "report": (("report", "--week", WEEK, "--out", str(out)), kw),
        "report_bad_week": (("report", "--week", "1999-W01", "--out", str(bad_out)), kw),
    }
    return {"report_path": out, "bad_report_path": bad_out, **_run_all(run_cli, jobs)}


def test_kpis_json_by_day_plant_and_version(
    seeded: dict[str, Any], sim_data: SimulatedData
) -> None:
    code, out, err = seeded["kpis_day_json"]
    assert code == 0, err
    rows = json.loads(out)
    assert set(rows[0]) == {"window_start", "plant_id", "model_version", *METRICS, *CHANGES}
    got = Counter(
        {(r["window_start"][:10], r["plant_id"], r["model_version"]): r["requests"] for r in rows}
    )
    assert got == Counter(
        (r["timestamp"][:10], r["plant_id"], r["model_version"]) for r in sim_data.requests
    )
    assert all(r["window_start"].endswith(" 00:00:00+00:00") for r in rows)
    assert sum(r["safety_incidents"] for r in rows) == sum(
        1 for r in sim_data.requests if r["contains_safety_keyword"]
    )
    # Day-over-day changes exist for every day but the first of each plant and version.
    assert sum(1 for r in rows if r["requests_change_pct"] is None) == 4 + 1


def test_kpis_csv_matches_json(seeded: dict[str, Any]) -> None:
    j, c = seeded["kpis_day_json"], seeded["kpis_day_csv"]
    assert j.code == c.code == 0, j.err + c.err
    reader = csv.DictReader(io.StringIO(c.out))
    assert reader.fieldnames == ["window_start", "plant_id", "model_version", *METRICS, *CHANGES]
    csv_rows = list(reader)
    json_rows = json.loads(j.out)
    assert len(csv_rows) == len(json_rows) == 21 * 4 + 4
    for a, b in zip(csv_rows, json_rows, strict=True):
        assert (a["window_start"], a["plant_id"], a["model_version"]) == (
            b["window_start"],
            b["plant_id"],
            b["model_version"],
        )
        assert int(a["requests"]) == b["requests"]
        assert float(a["latency_p95_ms"]) == pytest.approx(b["latency_p95_ms"], rel=1e-12)
        assert (a["feedback_avg_change"] == "") == (b["feedback_avg_change"] is None)


def test_kpis_table(seeded: dict[str, Any]) -> None:
    code, out, err = seeded["kpis_day_table"]
    assert code == 0, err
    assert "KPIs" in out
    for header in ("window", "plant", "version", "requests", "p95 ms", "feedback", "safety"):
        assert header in out
    canary = [_table_row(ln, "2026") for ln in out.splitlines() if "sop-assistant-v1.2" in ln]
    assert [(c[0], c[1]) for c in canary] == [
        ("2026-11-19", "Plant_B"),
        ("2026-11-20", "Plant_B"),
        ("2026-11-21", "Plant_B"),
        ("2026-11-22", "Plant_B"),
    ]


def test_drift_alert_exits_1(seeded: dict[str, Any]) -> None:
    code, out, err = seeded["drift_alert"]
    assert code == 1, err
    rows = {r["scope"]: r for r in json.loads(out)}
    assert set(rows) == {"all plants", "Plant_A", "Plant_B", "Plant_C", "Plant_D"}
    c = rows["Plant_C"]
    assert (c["status"], c["baseline"], c["current"]) == (
        "ALERT",
        "2026-11-02 .. 2026-11-16",
        "2026-11-16 .. 2026-11-23",
    )
    for r in rows.values():
        assert r["status"] == ("ALERT" if r["score"] > r["threshold"] else "OK")
        assert (r["embedder"], r["threshold"]) == ("hashing-384", 0.02)
    assert rows["all plants"]["n_current"] == sum(
        rows[p]["n_current"] for p in ("Plant_A", "Plant_B", "Plant_C", "Plant_D")
    )


def test_calibrated_suite_finds_and_explains_the_planted_topic(seeded: dict[str, Any]) -> None:
    code, out, err = seeded["drift_suite"]
    assert code == 1, err
    (row,) = json.loads(out)
    assert (row["scope"], row["method"], row["status"]) == ("Plant_C", "suite", "ALERT")
    assert row["p_value"] <= row["alpha"] == 0.05
    exp = row["explanation"]
    assert all(t["share_current"] > t["share_baseline"] for t in exp["topics"])
    # The planted topic is named by a grown cluster or among the most novel prompts.
    words = " ".join(
        [w for t in exp["topics"] for w in t["key_terms"] + t["examples"]] + exp["novel_prompts"]
    ).lower()
    assert any(w in words for w in ("battery", "lithium", "charging", "thermal", "pack"))


def test_drift_without_alert_exits_0(seeded: dict[str, Any]) -> None:
    code, out, err = seeded["drift_ok"]
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 5
    assert {r["status"] for r in rows} == {"OK"}
    alert = {r["scope"]: r["score"] for r in json.loads(seeded["drift_alert"].out)}
    assert {r["scope"]: r["score"] for r in rows} == alert


def test_drift_bad_window_exits_2(seeded: dict[str, Any]) -> None:
    code, out, err = seeded["drift_bad"]
    assert code == 2
    _no_traceback(out, err)
    assert _flat(err) == (
        "error (current): 'yesterday' is not a window: use 2026-W45 or 2026-11-01..2026-11-08"
    )


def _section(md: str, title: str) -> str:
    start = md.index(title)
    nxt = md.find("\n## ", start + len(title))
    return md[start : nxt if nxt >= 0 else len(md)]


def _fmt(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def test_report_matches_the_kpis(seeded: dict[str, Any]) -> None:
    code, out, err = seeded["report"]
    assert code == 0, err
    path: Path = seeded["report_path"]
    assert f"wrote {path}" in out.replace("\n", "")
    md = path.read_text(encoding="utf-8")
    assert list(path.parent.glob("*.tmp")) == []

    code, out, err = seeded["kpis_week_json"]
    assert code == 0, err
    kpis = json.loads(out)
    assert [k["plant_id"] for k in kpis] == ["Plant_A", "Plant_B", "Plant_C", "Plant_D"]
    assert {k["window_start"] for k in kpis} == {"2026-11-16 00:00:00+00:00"}

    assert md.startswith("# Weekly Manufacturing Copilot Performance Report\n")
    assert f"**Week:** {WEEK} (2026-11-16 to 2026-11-22)" in md
    assert "**Model Version(s):** sop-assistant-v1.1, sop-assistant-v1.2" in md
    table = _section(md, "## 1. Key Performance Indicators (KPIs)").splitlines()
    header = next(ln for ln in table if ln.startswith("| Plant |"))
    assert [c.strip() for c in header.strip("|").split("|")][:5] == [
        "Plant",
        "Requests",
        "Avg. Latency (ms)",
        "P95 Latency (ms)",
        "P99 Latency (ms)",
    ]
    for k in kpis:
        line = (
            f"| **{k['plant_id']}** | {k['requests']} | {_fmt(k['latency_avg_ms'], 0)} "
            f"| {_fmt(k['latency_p95_ms'], 0)} | {_fmt(k['latency_p99_ms'], 0)} "
            f"| {_fmt(k['feedback_avg'], 2)} ({k['feedback_n']}) "
            f"| {k['safety_incidents']} ({k['safety_rate'] * 100:.1f}%) "
            f"| {k['escalations_confirmed']} | {_fmt(k['feedback_avg_change'], 2)} "
            f"| {_fmt(k['safety_rate_change_pp'], 1)} |"
        )
        assert line in table
    total = next(ln for ln in table if ln.startswith("| **All plants** |"))
    assert total.split("|")[2].strip() == str(sum(k["requests"] for k in kpis))

    drift = _section(md, "## 2. Model Drift Analysis")
    assert "| Plant_C | suite |" in drift
    assert "<font color='red'>**ALERT**</font>" in drift

    summary = _section(md, "## 4. Summary & Actions")
    assert "- **Action Items:**" in summary
    assert re.search(
        r"^    \d\. Roll Plant_B back from sop-assistant-v1\.2 to sop-assistant-v1\.1 per "
        r"SOP-MLOPS-003",
        summary,
        re.M,
    )
    assert "Analyze new query clusters from production logs (" in summary
    assert "    - sop-assistant-v1.2 at Plant_B (" in summary


def test_report_for_a_week_without_data(seeded: dict[str, Any]) -> None:
    code, out, err = seeded["report_bad_week"]
    assert code == 2
    _no_traceback(out, err)
    assert _flat(err) == (
        "error (week): no requests in 1999-W01; the store holds 2026-11-02 to 2026-11-22"
    )
    assert not seeded["bad_report_path"].exists()
