"""The log store on a real directory, and the two ingest paths that feed it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelwarden.errors import DimensionError, InputError
from modelwarden.ingest import columnar
from modelwarden.ingest.core import Ingestor
from modelwarden.records import MAX_EMBEDDING_DIM
from modelwarden.store.logstore import LogStore, vectors_of
from modelwarden.store.schema import SCHEMAS

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def requests_table(rows: list[dict[str, Any]]) -> pa.Table:
    base = {
        "plant_id": "Plant_A",
        "model_version": "sop-assistant-v1.1",
        "user_prompt": "q",
        "generated_response": "a",
        "latency_ms": 100.0,
        "contains_safety_keyword": False,
        "safety_computed": False,
        "source": "test",
        "ingested_at": T0,
    }
    schema = SCHEMAS["requests"]
    return pa.Table.from_pylist(
        [{n: {**base, **r}.get(n) for n in schema.names} for r in rows], schema=schema
    )


def events_table(kind: str, rows: list[dict[str, Any]]) -> pa.Table:
    schema = SCHEMAS[kind]
    return pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)


def _req(i: int, **kw: Any) -> dict[str, Any]:
    return {"request_id": f"r{i}", "timestamp": T0 + timedelta(minutes=i), **kw}


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    return LogStore(tmp_path / "log", threads=1)


def _stored(store: LogStore, kind: str) -> list[dict[str, Any]]:
    files = store.files(kind)
    if not files:
        return []
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()


# ---- appends -----------------------------------------------------------------------------------
def test_append_is_idempotent_by_key(store: LogStore) -> None:
    first = store.append("requests", requests_table([_req(i) for i in range(5)]))
    assert (first.accepted, first.duplicates) == (5, 0)
    again = store.append("requests", requests_table([_req(i) for i in range(5)]))
    assert (again.accepted, again.duplicates, again.files) == (0, 5, [])
    mixed = store.append("requests", requests_table([_req(i) for i in range(3, 8)]))
    assert (mixed.accepted, mixed.duplicates) == (3, 2)
    assert store.count("requests") == 8
    assert sorted(r["request_id"] for r in _stored(store, "requests")) == [
        f"r{i}" for i in range(8)
    ]


def test_a_duplicate_key_keeps_the_stored_row(store: LogStore) -> None:
    store.append("requests", requests_table([_req(1, latency_ms=111.0)]))
    res = store.append("requests", requests_table([_req(1, latency_ms=999.0)]))
    assert (res.accepted, res.duplicates) == (0, 1)
    assert [r["latency_ms"] for r in _stored(store, "requests")] == [111.0]


def test_duplicates_inside_one_batch(store: LogStore) -> None:
    batch = requests_table(
        [
            _req(1, latency_ms=1.0),
            _req(2, latency_ms=2.0),
            _req(1, latency_ms=3.0),
            _req(3, latency_ms=4.0),
            _req(2, latency_ms=5.0),
        ]
    )
    res = store.append("requests", batch)
    assert (res.accepted, res.duplicates) == (3, 2)
    # The first occurrence of a key wins.
    got = {r["request_id"]: r["latency_ms"] for r in _stored(store, "requests")}
    assert got == {"r1": 1.0, "r2": 2.0, "r3": 4.0}


@pytest.mark.parametrize("kind", ["feedback", "escalations"])
def test_events_are_idempotent_by_event_id(store: LogStore, kind: str) -> None:
    extra = {"score": 4} if kind == "feedback" else {"reason": "r", "confirmed": True}
    rows = [
        {"event_id": f"e{i}", "request_id": "r1", "timestamp": T0 + timedelta(hours=i), **extra}
        for i in range(3)
    ]
    assert store.append(kind, events_table(kind, rows)).accepted == 3
    # Two events about the same request are two events; the same event twice is one.
    res = store.append(kind, events_table(kind, [*rows, {**rows[0], "event_id": "e9"}]))
    assert (res.accepted, res.duplicates) == (1, 3)
    assert sorted(r["event_id"] for r in _stored(store, kind)) == ["e0", "e1", "e2", "e9"]


def test_files_are_partitioned_by_utc_day(store: LogStore) -> None:
    plus2 = timezone(timedelta(hours=2))
    rows = [
        {"request_id": "a", "timestamp": datetime(2026, 11, 2, 23, 59, 59, tzinfo=UTC)},
        {"request_id": "b", "timestamp": datetime(2026, 11, 3, 0, 0, tzinfo=UTC)},
        # 01:30 on the 3rd in UTC+2 is 23:30 on the 2nd in UTC.
        {"request_id": "c", "timestamp": datetime(2026, 11, 3, 1, 30, tzinfo=plus2)},
        {"request_id": "d", "timestamp": datetime(2026, 11, 5, 12, 0, tzinfo=UTC)},
    ]
    res = store.append("requests", requests_table(rows))
    assert res.accepted == 4
    assert len(res.files) == 3
    days: dict[str, list[str]] = {}
    for f in store.files("requests"):
        p = Path(f)
        assert p.parent.parent == store.root / "requests"
        assert p.name.startswith("part-") and p.suffix == ".parquet"
        t = pq.read_table(p)
        assert t.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
        days.setdefault(p.parent.name, []).extend(t.column("request_id").to_pylist())
        for ts in t.column("timestamp").to_pylist():
            assert f"date={ts.astimezone(UTC).date().isoformat()}" == p.parent.name
    assert {k: sorted(v) for k, v in days.items()} == {
        "date=2026-11-02": ["a", "c"],
        "date=2026-11-03": ["b"],
        "date=2026-11-05": ["d"],
    }
    assert sorted(res.files) == store.files("requests")


def test_no_temporary_files_are_left_behind(store: LogStore) -> None:
    store.append("requests", requests_table([_req(i) for i in range(4)]))
    store.append("requests", requests_table([_req(i) for i in range(6)]))
    store.append(
        "feedback",
        events_table(
            "feedback", [{"event_id": "e", "request_id": "r1", "timestamp": T0, "score": 3}]
        ),
    )
    store.append_embeddings(
        "prompt", "hashing-8", ["r1", "r2"], np.eye(2, 8, dtype=np.float32), [T0] * 2
    )
    store.register_embedder("other", 3)
    assert list(store.root.rglob("*.tmp")) == []
    assert (store.root / "embedders.json").exists()


def test_unknown_tables_are_refused(store: LogStore) -> None:
    with pytest.raises(InputError):
        store.append("rejected", events_table("rejected", []))
    with pytest.raises(InputError):
        store.files("users")


def test_empty_store_reads_as_empty_tables(store: LogStore) -> None:
    con = store.connect()
    for kind, schema in SCHEMAS.items():
        t = con.table(kind)
        assert t.columns == tuple(schema.names)
        assert con.to_pyarrow(t.count()).as_py() == 0
    assert store.stats() == {
        "requests": 0,
        "feedback": 0,
        "escalations": 0,
        "rejected": 0,
        "embeddings": {},
    }


def test_concurrent_writers_accept_each_key_once(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from datetime import datetime, timedelta, UTC
        import pyarrow as pa
        from modelwarden.store.logstore import LogStore
        from modelwarden.store.schema import SCHEMAS
        t0 = datetime(2026, 11, 2, tzinfo=UTC)
        rows = [{{"request_id": f"r{{i}}", "timestamp": t0 + timedelta(minutes=i),
                  "plant_id": "P", "model_version": "v", "user_prompt": "q",
                  "generated_response": "a", "latency_ms": 1.0}} for i in range(200)]
        s = SCHEMAS["requests"]
        t = pa.Table.from_pylist([{{n: r.get(n) for n in s.names}} for r in rows], schema=s)
        res = LogStore({str(tmp_path / "log")!r}, threads=1).append("requests", t)
        print(res.accepted)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(int(o) for o in outs) == [0, 200]
    assert LogStore(tmp_path / "log").count("requests") == 200


# ---- embeddings --------------------------------------------------------------------------------
def test_embeddings_keyed_by_request_kind_and_embedder(store: LogStore) -> None:
    rng = np.random.default_rng(0)
    v8 = rng.normal(size=(3, 8)).astype(np.float32)
    ids = ["r1", "r2", "r3"]
    assert store.append_embeddings("prompt", "hashing-8", ids, v8, [T0] * 3) == 3
    assert store.append_embeddings("prompt", "hashing-8", ids, v8 * 2, [T0] * 3) == 0
    assert store.append_embeddings("prompt", "hashing-8", ["r3", "r4"], v8[:2], [T0] * 2) == 1
    assert store.append_embeddings("response", "hashing-8", ids, v8, [T0] * 3) == 3
    v3 = rng.normal(size=(3, 3)).astype(np.float32)
    assert store.append_embeddings("prompt", "tiny", ids, v3, [T0] * 3) == 3
    assert store.embedders() == {"hashing-8": 8, "tiny": 3}
    assert store.stats()["embeddings"] == {
        "prompt/hashing-8": 4,
        "response/hashing-8": 3,
        "prompt/tiny": 3,
        "response/tiny": 0,
    }
    con = store.connect()
    t = con.to_pyarrow(store.embeddings_table(con, "prompt", "hashing-8").order_by("request_id"))
    assert t.column("request_id").to_pylist() == ["r1", "r2", "r3", "r4"]
    got = vectors_of(t)
    assert got.shape == (4, 8)
    # The first vector stored for a key stays; a later one is not written over it.
    np.testing.assert_array_equal(got[:3], v8)
    np.testing.assert_array_equal(got[3], v8[1])
    assert len(store.embedding_files("prompt", "hashing-8")) == 2


def test_embedding_dimension_is_registered_and_enforced(store: LogStore) -> None:
    store.append_embeddings("prompt", "hashing-8", ["r1"], np.ones((1, 8), np.float32), [T0])
    with pytest.raises(DimensionError) as info:
        store.append_embeddings("response", "hashing-8", ["r2"], np.ones((1, 4), np.float32), [T0])
    assert info.value.field == "embedding"
    assert "8" in info.value.message and "4" in info.value.message
    with pytest.raises(DimensionError):
        store.register_embedder("hashing-8", 9)
    store.register_embedder("hashing-8", 8)  # the same dimension again is fine
    assert store.embedders() == {"hashing-8": 8}
    assert store.embedding_files("response", "hashing-8") == []


def test_bad_vectors_are_refused(store: LogStore) -> None:
    bad = np.ones((2, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(InputError) as info:
        store.append_embeddings("prompt", "e", ["a", "b"], bad, [T0] * 2)
    assert info.value.field == "vectors"
    with pytest.raises(InputError):
        store.append_embeddings("prompt", "e", ["a"], np.ones((2, 4), np.float32), [T0])
    with pytest.raises(DimensionError):
        store.append_embeddings("prompt", "e", ["a"], np.ones(4, np.float32), [T0])
    assert store.embedders() == {}
    assert store.embedding_files("prompt", "e") == []


def test_a_refused_append_registers_no_dimension(store: LogStore) -> None:
    with pytest.raises(InputError) as info:
        store.append_embeddings("summary", "e", ["a"], np.ones((1, 4), np.float32), [T0])
    assert info.value.field == "kind"
    # Nothing was stored, so nothing may be remembered: "e" is still free to have 8 dimensions.
    assert store.embedders() == {}
    assert store.append_embeddings("prompt", "e", ["a"], np.ones((1, 8), np.float32), [T0]) == 1


# ---- the columnar Parquet path and the record-by-record JSONL path agree -------------------------
def _good(i: int, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "request_id": f"req-{i:03d}",
        "timestamp": T0 + timedelta(minutes=7 * i),
        "plant_id": "Plant_B",
        "model_version": "sop-assistant-v1.1",
        "user_prompt": "What is the lubrication schedule for the main conveyor?",
        "generated_response": "Every 200 operating hours with ISO VG 46 oil.",
        "latency_ms": 250.0 + i,
        "human_feedback_score": None,
        "contains_safety_keyword": None,
        "route": None,
        "user_id": None,
        "session_id": None,
        "parent_request_id": None,
        "prompt_tokens": None,
        "completion_tokens": None,
        "error": None,
        "embedding_model": None,
        "prompt_embedding": None,
        "response_embedding": None,
    }
    row.update(kw)
    return row


VEC4 = [0.1, -0.2, 0.3, 0.4]


def corpus() -> list[tuple[str | None, dict[str, Any]]]:
    """(field expected to be rejected or None for a good record, the record)."""
    nan, inf = math.nan, math.inf
    items: list[tuple[str | None, dict[str, Any]]] = [
        (
            None,
            _good(
                0,
                prompt_embedding=VEC4,
                response_embedding=VEC4,
                human_feedback_score=5,
                route="stable",
                prompt_tokens=12,
            ),
        ),
        (None, _good(1, generated_response=None, error="upstream timeout")),
        (
            None,
            _good(
                2,
                route="canary",
                contains_safety_keyword=True,
                user_id="op-7",
                session_id="op-7-20261102",
                completion_tokens=30,
            ),
        ),
        (None, _good(3, generated_response="Bypass the interlock to save time.")),
        (None, _good(4, embedding_model="other-emb", prompt_embedding=[0.5] * 6)),
        (
            None,
            _good(
                5,
                prompt_embedding=VEC4,
                route="shadow",
                parent_request_id="req-002",
                latency_ms=0.0,
                human_feedback_score=1,
            ),
        ),
        ("request_id", _good(10, request_id=None)),
        ("request_id", _good(11, request_id="")),
        ("request_id", _good(12, request_id="x" * 201)),
        ("timestamp", _good(13, timestamp=None)),
        ("plant_id", _good(14, plant_id=None)),
        ("model_version", _good(15, model_version="")),
        ("user_prompt", _good(16, user_prompt="")),
        ("user_prompt", _good(17, user_prompt="w" * 32_769)),
        ("generated_response", _good(18, generated_response="w" * 65_537)),
        ("generated_response", _good(19, generated_response=None)),
        ("generated_response", _good(20, generated_response=None, error="")),
        ("latency_ms", _good(21, latency_ms=None)),
        ("latency_ms", _good(22, latency_ms=-5.0)),
        ("latency_ms", _good(23, latency_ms=nan)),
        ("latency_ms", _good(24, latency_ms=inf)),
        ("human_feedback_score", _good(25, human_feedback_score=0)),
        ("human_feedback_score", _good(26, human_feedback_score=6)),
        ("route", _good(27, route="blue")),
        ("route", _good(28, route="")),
        ("error", _good(29, error="e" * 4_001)),
        ("user_id", _good(30, user_id="")),
        ("session_id", _good(31, session_id="s" * 201)),
        ("parent_request_id", _good(32, parent_request_id="")),
        ("prompt_tokens", _good(33, prompt_tokens=-1)),
        ("completion_tokens", _good(34, completion_tokens=-3)),
        ("prompt_embedding", _good(35, prompt_embedding=[0.1, nan, 0.3, 0.4])),
        ("response_embedding", _good(36, response_embedding=[inf, 0.0, 0.0, 0.0])),
        ("prompt_embedding", _good(37, prompt_embedding=[])),
        ("prompt_embedding", _good(38, prompt_embedding=[0.0] * (MAX_EMBEDDING_DIM + 1))),
        ("prompt_embedding", _good(39, prompt_embedding=[0.1, 0.2, 0.3])),
        ("response_embedding", _good(40, response_embedding=[0.1] * 5)),
        ("prompt_embedding", _good(41, embedding_model="other-emb", prompt_embedding=[0.5] * 5)),
        ("embedding_model", _good(42, embedding_model="")),
        ("prompt_tokens", _good(44, prompt_tokens=2**31)),
        ("completion_tokens", _good(45, completion_tokens=3_000_000_000)),
        (None, _good(43, prompt_embedding=VEC4, response_embedding=VEC4)),
        # Control characters: only tab, newline and carriage return are text.
        ("user_prompt", _good(46, user_prompt="torque\x00for M12?")),
        ("plant_id", _good(47, plant_id="Plant_\x07B")),
        ("error", _good(48, generated_response=None, error="timeout \x1b[31m")),
        ("generated_response", _good(49, generated_response="85 Nm\x7f")),
        ("user_id", _good(50, user_id="op\x85")),
        (None, _good(51, user_prompt="line one\n\tline two\r\n")),
    ]
    return items


TYPED = pa.schema(
    [
        ("request_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("plant_id", pa.string()),
        ("model_version", pa.string()),
        ("user_prompt", pa.string()),
        ("generated_response", pa.string()),
        ("latency_ms", pa.float64()),
        ("human_feedback_score", pa.int64()),
        ("contains_safety_keyword", pa.bool_()),
        ("route", pa.string()),
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("parent_request_id", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("error", pa.string()),
        ("embedding_model", pa.string()),
        ("prompt_embedding", pa.list_(pa.float32())),
        ("response_embedding", pa.list_(pa.float32())),
    ]
)


def _write_both(rows: list[dict[str, Any]], folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    jsonl = folder / "records.jsonl"
    with open(jsonl, "w", encoding="utf-8") as fh:
        for r in rows:
            ts = r["timestamp"]
            fh.write(json.dumps({**r, "timestamp": ts.isoformat() if ts else None}) + "\n")
    parquet = folder / "records.parquet"
    table = pa.Table.from_pylist(rows, schema=TYPED)
    assert columnar.is_native(table.schema)
    pq.write_table(table, parquet)
    return jsonl, parquet


def _ingest(path: Path, root: Path) -> tuple[LogStore, Any]:
    store = LogStore(root / "log", threads=1)
    return store, Ingestor(store).ingest_path(str(path), "requests")


def _rejected_fields(store: LogStore, prefix: str) -> set[tuple[int, str]]:
    out = set()
    for r in _stored(store, "rejected"):
        where, _, number = r["location"].partition(" ")
        assert where == prefix, r["location"]
        for p in json.loads(r["problems"]):
            out.add((int(number), p["field"]))
        # The first problem is the one listed in the table's own columns.
        assert json.loads(r["problems"])[0]["field"] == r["field"]
        assert r["reason"]
    return out


def _both_paths(rows: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    jsonl, parquet = _write_both(rows, tmp_path / "files")
    s_json, rep_json = _ingest(jsonl, tmp_path / "json")
    s_pq, rep_pq = _ingest(parquet, tmp_path / "parquet")
    return {"json": (s_json, rep_json), "parquet": (s_pq, rep_pq)}


def test_parquet_and_jsonl_reject_the_same_records(tmp_path: Path) -> None:
    items = corpus()
    rows = [r for _, r in items]
    paths = _both_paths(rows, tmp_path)
    s_json, rep_json = paths["json"]
    s_pq, rep_pq = paths["parquet"]
    expected = {(i + 1, f) for i, (f, _) in enumerate(items) if f is not None}
    assert _rejected_fields(s_json, "line") == expected
    assert _rejected_fields(s_pq, "row") == expected
    n_bad = len(expected)
    for rep in (rep_json, rep_pq):
        assert (rep.read, rep.accepted, rep.rejected) == (len(rows), len(rows) - n_bad, n_bad)


def test_parquet_and_jsonl_store_the_same_good_records(tmp_path: Path) -> None:
    rows = [r for _, r in corpus()]
    paths = _both_paths(rows, tmp_path)
    tables = {}
    for name, (store, _) in paths.items():
        got = sorted(_stored(store, "requests"), key=lambda r: r["request_id"])
        for r in got:
            assert r.pop("source").endswith(f"records.{'jsonl' if name == 'json' else 'parquet'}")
            r.pop("ingested_at")
        tables[name] = got
    assert tables["json"] == tables["parquet"]
    by_id = {r["request_id"]: r for r in tables["json"]}
    assert sorted(by_id) == [
        "req-000",
        "req-001",
        "req-002",
        "req-003",
        "req-004",
        "req-005",
        "req-043",
        "req-051",
    ]
    assert by_id["req-051"]["user_prompt"] == "line one\n\tline two\r\n"
    # A missing safety flag is computed from the response; a given one is kept.
    assert by_id["req-003"]["contains_safety_keyword"] is True
    assert by_id["req-003"]["safety_computed"] is True
    assert by_id["req-002"]["contains_safety_keyword"] is True
    assert by_id["req-002"]["safety_computed"] is False
    assert by_id["req-000"]["contains_safety_keyword"] is False
    s_json, s_pq = paths["json"][0], paths["parquet"][0]
    assert s_json.embedders() == s_pq.embedders() == {"inline": 4, "other-emb": 6}
    assert (
        s_json.stats()["embeddings"]
        == s_pq.stats()["embeddings"]
        == {
            "prompt/inline": 3,
            "response/inline": 2,
            "prompt/other-emb": 1,
            "response/other-emb": 0,
        }
    )


def test_paths_agree_when_the_first_vector_comes_with_a_bad_record(tmp_path: Path) -> None:
    # The dimension of an embedder comes from accepted records, not from a rejected one.
    rows = [
        _good(0, latency_ms=-1.0, prompt_embedding=[0.1] * 5),
        _good(1, prompt_embedding=VEC4),
        _good(2, prompt_embedding=VEC4),
    ]
    paths = _both_paths(rows, tmp_path)
    assert _rejected_fields(paths["json"][0], "line") == {(1, "latency_ms")}
    assert _rejected_fields(paths["parquet"][0], "row") == {(1, "latency_ms")}
    assert paths["parquet"][1].accepted == paths["json"][1].accepted == 2


def test_paths_agree_when_the_first_vector_is_a_response_embedding(tmp_path: Path) -> None:
    # Record order decides the dimension, whichever embedding column comes first.
    rows = [_good(0, response_embedding=[0.1] * 5), _good(1, prompt_embedding=VEC4)]
    paths = _both_paths(rows, tmp_path)
    assert _rejected_fields(paths["json"][0], "line") == {(2, "prompt_embedding")}
    assert _rejected_fields(paths["parquet"][0], "row") == {(2, "prompt_embedding")}


def test_vectors_of_an_existing_embedder_must_match_it(tmp_path: Path) -> None:
    rows = [_good(0, prompt_embedding=VEC4)]
    jsonl, _ = _write_both(rows, tmp_path / "a")
    store, rep = _ingest(jsonl, tmp_path / "s")
    assert rep.accepted == 1
    later = [_good(1, prompt_embedding=[0.2] * 3), _good(2, prompt_embedding=[0.2] * 4)]
    jsonl2, parquet2 = _write_both(later, tmp_path / "b")
    for path, prefix in ((jsonl2, "line"), (parquet2, "row")):
        rep = Ingestor(store).ingest_path(str(path), "requests")
        assert (rep.accepted, rep.rejected) == (1 if prefix == "line" else 0, 1)
    fields = {(r["location"], r["field"]) for r in _stored(store, "rejected")}
    assert fields == {("line 1", "prompt_embedding"), ("row 1", "prompt_embedding")}
    assert store.embedders() == {"inline": 4}


# ---- values the store's columns cannot hold, on both paths ---------------------------------------
def test_embedding_values_beyond_float32_are_rejected_on_both_paths(tmp_path: Path) -> None:
    rows = [
        _good(0, prompt_embedding=VEC4),
        _good(1, prompt_embedding=[0.1, 1e39, 0.0, 0.0]),
        _good(2, response_embedding=[-3.5e38, 0.0, 0.0, 0.0]),
        _good(3, prompt_embedding=[3.4028235e38, 0.0, 0.0, 0.0]),  # the largest float32
        _good(4, prompt_embedding=[math.inf, 1e39, 0.0, 0.0]),
    ]
    schema = pa.schema(
        [
            f if f.name not in columnar.EMBEDDINGS else pa.field(f.name, pa.list_(pa.float64()))
            for f in TYPED
        ]
    )
    folder = tmp_path / "files"
    jsonl, _ = _write_both(rows, folder)
    parquet = folder / "f64.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), parquet)
    reasons = {}
    for path, prefix in ((jsonl, "line"), (parquet, "row")):
        store, rep = _ingest(path, tmp_path / prefix)
        assert (rep.read, rep.accepted, rep.rejected) == (5, 2, 3)
        reasons[prefix] = {
            (r["location"].split()[1], r["field"], r["reason"]) for r in _stored(store, "rejected")
        }
        con = store.connect()
        vectors = vectors_of(con.to_pyarrow(store.embeddings_table(con, "prompt", "inline")))
        assert vectors.shape == (2, 4) and np.isfinite(vectors).all()
    fits = "values must fit a 32-bit float (|x| <= 3.4e38)"
    assert (
        reasons["line"]
        == reasons["row"]
        == {
            ("2", "prompt_embedding", fits),
            ("3", "response_embedding", fits),
            ("5", "prompt_embedding", "must be a finite number (no NaN or infinity)"),
        }
    )


def _bad_utf8_strings(values: list[bytes]) -> pa.Array:
    """A string array holding bytes that are not UTF-8, as a foreign Parquet writer can."""
    offsets = np.cumsum([0, *(len(v) for v in values)]).astype(np.int32)
    return pa.Array.from_buffers(
        pa.string(),
        len(values),
        [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(values))],
    )


@pytest.mark.parametrize("native", [True, False])
def test_parquet_cells_python_cannot_hold_are_rejected_with_their_field(
    tmp_path: Path, native: bool
) -> None:
    n = 5
    table = pa.table(
        {
            "request_id": [f"p{i}" for i in range(n)],
            # 2**60 ms is far beyond the year 9999.
            "timestamp": pa.array(
                [1_793_000_000_000, 2**60, 1_793_000_000_000, 1_793_000_000_000, -(2**60)],
                pa.timestamp("ms", tz="UTC"),
            ),
            "plant_id": ["Plant_A"] * n,
            "model_version": ["v1"] * n,
            "user_prompt": _bad_utf8_strings([b"ok", b"ok", b"torque \xed\xa0\x80", b"ok", b"ok"]),
            "generated_response": ["fine"] * n,
            # A latency beyond 2**53 is rounded into the float column, as JSON's would be.
            "latency_ms": pa.array([5, 6, 7, 2**53 + 1, 9], pa.int64()),
            # A float score is not a native type: the file takes the record-by-record path.
            "human_feedback_score": pa.array([4] * n, pa.int64() if native else pa.float64()),
        }
    )
    path = tmp_path / "cells.parquet"
    pq.write_table(table, path)
    assert columnar.is_native(pq.read_schema(path)) is native
    store, rep = _ingest(path, tmp_path / "s")
    assert (rep.read, rep.accepted, rep.rejected) == (5, 2, 3)
    stored = sorted(_stored(store, "requests"), key=lambda r: r["request_id"])
    assert [(r["request_id"], r["latency_ms"]) for r in stored] == [
        ("p0", 5.0),
        ("p3", float(2**53)),
    ]
    rejected = {r["location"]: r for r in _stored(store, "rejected")}
    assert {loc: (r["field"], r["reason"]) for loc, r in rejected.items()} == {
        "row 2": ("timestamp", "is out of range (years 1 to 9999 in UTC)"),
        "row 3": ("user_prompt", "is not valid Unicode text (its bytes are not UTF-8)"),
        "row 5": ("timestamp", "is out of range (years 1 to 9999 in UTC)"),
    }
    # The raw copy is readable text that still shows the row.
    assert "torque \ufffd" in rejected["row 3"]["raw"]
    assert "1152921504606846976 ms since 1970" in rejected["row 2"]["raw"]
