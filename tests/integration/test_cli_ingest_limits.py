"""``modelwarden ingest`` of files holding values the store's columns cannot hold.

Token counts beyond 32 bits, embedding values beyond float32, text with lone surrogates and
timestamps outside the years 1 to 9999 are valid JSON; each such record is kept in the rejected
store with its field and reason, and the valid records beside it are stored.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelwarden.store.logstore import LogStore

UNICODE = "is not valid Unicode text (it holds a lone surrogate such as \\ud800)"
FLOAT32 = "values must fit a 32-bit float (|x| <= 3.4e38)"
INT32 = "input should be less than or equal to 2147483647"
RANGE = "is out of range (years 1 to 9999 in UTC)"


def _good(i: int, **kw: Any) -> dict[str, Any]:
    row = {
        "request_id": f"lim-{i:02d}",
        "timestamp": f"2026-11-02T10:{i:02d}:00Z",
        "plant_id": "Plant_A",
        "model_version": "sop-assistant-v1.1",
        "user_prompt": "What is the torque for the M12 flange bolts?",
        "generated_response": "85 Nm, in a star pattern.",
        "latency_ms": 200 + i,
        "prompt_embedding": [0.1, 0.2, 0.3, 0.4],
    }
    row.update(kw)
    return row


def _stored_ids(data: Path) -> list[str]:
    files = LogStore(data / "log").files("requests")
    if not files:
        return []
    return sorted(
        pa.concat_tables([pq.read_table(f) for f in files]).column("request_id").to_pylist()
    )


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory: pytest.TempPathFactory, run_cli: Any) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("limits")
    data = root / "warden-data"
    path = root / "limits.jsonl"
    # json.dumps writes "\ud800" as the escape JSON allows, exactly as a client would send it.
    lines = [
        json.dumps(_good(1)),
        json.dumps(_good(2, prompt_tokens=3_000_000_000)),
        json.dumps(_good(3, completion_tokens=2**31)),
        json.dumps(_good(4)),
        json.dumps(_good(5, prompt_embedding=[0.1, 1e39, 0.3, 0.4])),
        json.dumps(_good(6, user_prompt="torque for \ud800 bolts")),
        json.dumps(_good(7, request_id="lim-\udfff")),
        json.dumps(_good(8, timestamp="0001-01-01T00:00:00+05:00")),
        json.dumps(_good(9, prompt_tokens=2**31 - 1, prompt_embedding=[3.4028235e38, 0, 0, 0])),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return {
        "path": path,
        "data": data,
        "ingest": run_cli("ingest", str(path), "--format", "json", data=data),
        "rejected": run_cli("rejected", "--format", "json", data=data),
        "table": run_cli("rejected", data=data),
    }


def test_bad_values_are_rejected_and_the_good_records_stored(jsonl: dict[str, Any]) -> None:
    code, out, err = jsonl["ingest"]
    assert code == 2, err
    assert "Traceback" not in out + err
    report = json.loads(out)
    assert (report["read"], report["accepted"], report["rejected"]) == (9, 3, 6)
    assert _stored_ids(jsonl["data"]) == ["lim-01", "lim-04", "lim-09"]


def test_rejected_lists_each_bad_record_with_its_field_and_reason(jsonl: dict[str, Any]) -> None:
    code, out, err = jsonl["rejected"]
    assert code == 0, err
    rows = {r["location"]: r for r in json.loads(out)}
    assert {loc: (r["record_key"], r["field"], r["reason"]) for loc, r in rows.items()} == {
        "line 2": ("lim-02", "prompt_tokens", INT32),
        "line 3": ("lim-03", "completion_tokens", INT32),
        "line 5": ("lim-05", "prompt_embedding", FLOAT32),
        "line 6": ("lim-06", "user_prompt", UNICODE),
        "line 7": ("lim-?", "request_id", UNICODE),
        "line 8": ("lim-08", "timestamp", RANGE),
    }
    assert {r["source"] for r in rows.values()} == {str(jsonl["path"])}


def test_rejected_table_shows_them_too(jsonl: dict[str, Any]) -> None:
    code, out, err = jsonl["table"]
    assert code == 0, err
    assert "Traceback" not in out + err
    for text in ("prompt_tokens", "prompt_embedding", "user_prompt", "lone surrogate", "timestamp"):
        assert text in out


def test_csv_token_counts_beyond_32_bits(tmp_path: Path, run_cli: Any) -> None:
    path = tmp_path / "limits.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
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
                "prompt_tokens",
                "prompt_embedding",
            ]
        )
        w.writerow(
            ["c1", "2026-11-02T10:00:00Z", "Plant_A", "v1", "q", "a", "5", "12", "[0.5, 0.5]"]
        )
        w.writerow(["c2", "2026-11-02T10:01:00Z", "Plant_A", "v1", "q", "a", "5", "4294967296", ""])
        w.writerow(["c3", "2026-11-02T10:02:00Z", "Plant_A", "v1", "q", "a", "5", "", "[1e39, 0]"])
    data = tmp_path / "warden-data"
    code, out, err = run_cli("ingest", str(path), "--format", "json", data=data)
    assert code == 2, err
    assert (json.loads(out)["accepted"], json.loads(out)["rejected"]) == (1, 2)
    assert _stored_ids(data) == ["c1"]
    code, out, err = run_cli("rejected", "--format", "json", data=data)
    assert {(r["location"], r["field"], r["reason"]) for r in json.loads(out)} == {
        ("row 2", "prompt_tokens", INT32),
        ("row 3", "prompt_embedding", FLOAT32),
    }
