"""Strict input, the same rules everywhere: numbers as strings, control characters, and a CSV
line with a byte that is not UTF-8 (rejected with its line; the rest of the file is stored)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwarden.governance.keys import create_key
from modelwarden.ingest.core import Ingestor
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

HEADER = b"request_id,timestamp,plant_id,model_version,user_prompt,generated_response,latency_ms,human_feedback_score\n"


def _rows(store: LogStore, table: str) -> list[dict[str, Any]]:
    con = store.connect()
    t = con.table(table)
    return con.to_pyarrow(t.drop("raw") if table == "rejected" else t).to_pylist()


def test_a_csv_line_with_a_bad_byte_is_rejected_with_its_line_and_the_rest_stored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "logs.csv"
    path.write_bytes(
        HEADER
        + b"r1,2026-11-02T10:00:00Z,Plant_B,v1,hello,hi,12,4\n"
        + b'r2,2026-11-02T10:01:00Z,Plant_B,v1,"two\nlines",hi,12.5,\n'
        + b"r3,2026-11-02T10:02:00Z,Plant_B,v1,caf\xe9,hi,12,5\n"
        + b"r4,2026-11-02T10:03:00Z,Plant_B,v1,ok,hi,fast,4\n"
        + b"r5,2026-11-02T10:04:00Z,Plant_B,v1,ok,hi, 7 ,4.0\n"
        + b"r6,2026-11-02T10:05:00Z,Plant_B,v1,nul\x00here,hi,7,\n"
    )
    store = LogStore(tmp_path / "log", threads=1)
    report = Ingestor(store).ingest_path(str(path), "requests")
    assert (report.read, report.accepted, report.rejected) == (6, 3, 3)
    stored = {r["request_id"]: r for r in _rows(store, "requests")}
    assert sorted(stored) == ["r1", "r2", "r5"]
    assert stored["r1"]["latency_ms"] == 12.0 and stored["r1"]["human_feedback_score"] == 4
    assert stored["r2"]["user_prompt"] == "two\nlines"
    assert stored["r5"]["latency_ms"] == 7.0 and stored["r5"]["human_feedback_score"] == 4
    rejected = {r["location"]: r for r in _rows(store, "rejected")}
    assert set(rejected) == {"row 3", "row 4", "row 6"}
    assert rejected["row 3"]["field"] == "user_prompt"
    assert "not valid UTF-8 (byte 0xe9" in rejected["row 3"]["reason"]
    assert "on line 5" in rejected["row 3"]["reason"]  # the header, then r2 spans two lines
    assert rejected["row 4"]["field"] == "latency_ms"
    assert rejected["row 4"]["reason"] == "must be a number, not a string ('fast')"
    assert rejected["row 6"]["field"] == "user_prompt"
    assert "control character (U+0000)" in rejected["row 6"]["reason"]


def test_jsonl_numbers_as_strings_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "feedback.jsonl"
    lines = [
        {"request_id": "r1", "timestamp": "2026-11-02T10:00:00Z", "score": 4},
        {"request_id": "r2", "timestamp": "2026-11-02T10:00:00Z", "score": "4"},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    store = LogStore(tmp_path / "log", threads=1)
    report = Ingestor(store).ingest_path(str(path), "feedback")
    assert (report.accepted, report.rejected) == (1, 1)
    [bad] = _rows(store, "rejected")
    assert (bad["location"], bad["field"], bad["reason"]) == (
        "line 2",
        "score",
        "must be a number, not a string ('4')",
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[httpx.Client, str]]:
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    key = create_key(state, "ingest")[0]
    state.close()
    app = create_app(
        Settings(data_dir=data, embedder="hashing"),
        ServerConfig(flush_interval_s=0.1, run_controller=False),
    )
    with ServerThread(app) as thread, httpx.Client(base_url=thread.url, timeout=10) as http:
        yield http, key


def test_http_rejects_numbers_as_strings_and_control_characters(
    server: tuple[httpx.Client, str],
) -> None:
    http, key = server
    auth = {"Authorization": f"Bearer {key}"}
    fb = {"request_id": "r1", "timestamp": "2026-11-02T10:00:00Z"}
    res = http.post(
        "/v1/feedback", json=[{**fb, "score": 4}, {**fb, "score": "4"}], headers=auth
    ).json()
    assert [r["status"] for r in res["results"]] == ["accepted", "invalid"]
    assert res["results"][1]["field"] == "score"
    assert res["results"][1]["reason"] == "must be a number, not a string ('4')"
    esc = {"request_id": "r1", "timestamp": "2026-11-02T10:00:00Z", "reason": "bad\x00answer"}
    res = http.post("/v1/escalations", json=esc, headers=auth).json()
    assert res["results"][0]["field"] == "reason"
    assert "control character (U+0000)" in res["results"][0]["reason"]
