"""Drift monitoring over the seeded store: per version, reservoir baselines, history, quality.

The seeded store holds weeks 45-47 of 2026 with a drift at Plant_C and a bad canary
(sop-assistant-v1.2) at Plant_B in week 47. Each module works on its own copy, since drift runs
write the history and the reservoirs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete

from modelwarden.drift.baseline import reservoir_seed, update_baselines
from modelwarden.drift.history import (
    ALL_PLANTS,
    drift_results,
    load_reservoir,
    read_history,
    reservoir_dir,
)
from modelwarden.drift.monitor import drift_over_windows
from modelwarden.drift.reservoir import Reservoir
from modelwarden.embed.service import window_vectors
from modelwarden.report.weekly import build_weekly_report, render_markdown
from modelwarden.server.app import create_app
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore
from modelwarden.windows import parse_window_arg

STABLE = "sop-assistant-v1.1"
CANARY = "sop-assistant-v1.2"
BASELINE = "2026-W45..2026-W46"
CURRENT = "2026-W47"


@pytest.fixture(scope="module")
def data(seeded_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("drift-monitoring") / "warden-data"
    shutil.copytree(seeded_data_dir, d)
    # Other modules' reports on the shared store record drift history too; these tests count
    # the points their own runs write, so they start from an empty history.
    store = StateStore.at(d)
    try:
        with store.engine.begin() as conn:
            conn.execute(delete(drift_results))
    finally:
        store.close()
    return d


def _settings(data: Path) -> Settings:
    return Settings(data_dir=data, embedder="hashing", embed_threads=1)


def _windows() -> tuple[Any, Any]:
    return parse_window_arg(BASELINE, "baseline"), parse_window_arg(CURRENT, "current")


def _json(run_cli: Any, data: Path, *args: str, code: int | None = None) -> Any:
    res = run_cli(*args, "--format", "json", data=data, timeout=600)
    assert res.code in ((0, 1) if code is None else (code,)), res.err
    return json.loads(res.out)


# ---- per plant and model version -----------------------------------------------------------


def test_one_row_per_plant_and_version_each_against_its_plants_baseline(data: Path) -> None:
    s = _settings(data)
    b, c = _windows()
    rows = drift_over_windows(s, b, c, by=("plant_id", "model_version"), record=False)
    assert [(r["scope"], r["model_version"]) for r in rows] == [
        ("all plants", None),
        ("Plant_A", STABLE),
        ("Plant_B", STABLE),
        ("Plant_B", CANARY),
        ("Plant_C", STABLE),
        ("Plant_D", STABLE),
    ]
    # The split covers the week: the version rows add up to the overall row.
    assert sum(r["n_current"] for r in rows[1:]) == rows[0]["n_current"]
    # A version new this week is compared with its plant's baseline (every version).
    plant_b = len(window_vectors(s, "prompt", "hashing-384", b.since, b.until, "Plant_B").vectors)
    assert rows[2]["n_baseline"] == rows[3]["n_baseline"] == plant_b
    canary = window_vectors(s, "prompt", "hashing-384", c.since, c.until, "Plant_B", CANARY)
    assert rows[3]["n_current"] == len(canary.request_ids) > 20
    assert {(r["scope"], r["status"]) for r in rows if r["status"] == "ALERT"} == {
        ("all plants", "ALERT"),
        ("Plant_C", "ALERT"),
    }
    # --version: the canary's traffic overall and at the one plant that served it.
    only = drift_over_windows(s, b, c, version=CANARY, method="centroid_euclidean", record=False)
    assert [(r["scope"], r["model_version"]) for r in only] == [
        ("all plants", CANARY),
        ("Plant_B", CANARY),
    ]
    assert only[0]["n_current"] == only[1]["n_current"] == rows[3]["n_current"]


# ---- history --------------------------------------------------------------------------------


def test_every_run_is_stored_once_per_window_scope_baseline_and_method(
    data: Path, run_cli: Any
) -> None:
    args = ("drift", "--baseline", BASELINE, "--current", CURRENT, "--plant", "Plant_C")
    first = _json(run_cli, data, *args, code=1)
    again = _json(run_cli, data, *args, code=1)
    assert first == again
    points = read_history(_settings(data), plant="Plant_C", kind="prompt", members=True)
    points = [p for p in points if p["baseline"] == "2026-11-02 .. 2026-11-16"]
    # The suite and its four members, once each although the window was run twice.
    assert sorted(p["method"] for p in points) == [
        "centroid_euclidean",
        "classifier",
        "clusters",
        "mmd",
        "suite",
    ]
    row = first[0]
    suite = next(p for p in points if p["method"] == "suite")
    assert (suite["status"], suite["p_value"], suite["statistic"]) == (
        row["status"],
        row["p_value"],
        row["score"],
    )
    assert (suite["window_start"], suite["window_end"]) == (
        "2026-11-16T00:00:00+00:00",
        "2026-11-23T00:00:00+00:00",
    )
    for p in points:
        if p["method"] != "suite":
            assert p["parent_method"] == "suite"
            assert p["p_value"] == row["members"][p["method"]]["p_value"]
    # The command shows the same points, in a new process.
    shown = _json(run_cli, data, "drift-history", "--plant", "Plant_C", "--kind", "prompt")
    assert [p["method"] for p in shown if p["baseline"] == suite["baseline"]] == ["suite"]


# ---- quality drift --------------------------------------------------------------------------


def test_quality_drift_finds_the_canary_and_the_poorly_served_new_topics(
    data: Path, run_cli: Any
) -> None:
    rows = _json(
        run_cli,
        data,
        "drift",
        "--kind",
        "quality",
        "--by",
        "plant_id,model_version",
        "--baseline",
        BASELINE,
        "--current",
        CURRENT,
        code=1,
    )
    assert {r["method"] for r in rows} == {
        "feedback_score",
        "safety_rate",
        "cusum",
        "bernoulli_cusum",
    }
    assert len(rows) == 6 * 4
    alerts = {
        (r["scope"], r["model_version"], r["signal"], r["method"])
        for r in rows
        if r["status"] == "ALERT"
    }
    assert alerts == {
        ("Plant_B", CANARY, "feedback", "feedback_score"),
        ("Plant_B", CANARY, "safety", "safety_rate"),
        ("Plant_B", CANARY, "feedback", "cusum"),
        ("Plant_B", CANARY, "safety", "bernoulli_cusum"),
        # The drift scenario's new topics get poorer answers at Plant_C.
        ("Plant_C", STABLE, "feedback", "feedback_score"),
        ("Plant_C", STABLE, "feedback", "cusum"),
    }
    canary_safety = next(
        r for r in rows if r["model_version"] == CANARY and r["method"] == "bernoulli_cusum"
    )
    # The canary started on 2026-11-19; the sequential test dates the change there.
    assert canary_safety["detail"]["change_day"] == "2026-11-19"
    assert canary_safety["score"] > canary_safety["threshold"]
    stored = read_history(_settings(data), kind="quality", version=CANARY)
    assert len(stored) == 4  # the four tests of Plant_B's canary row


# ---- response drift -------------------------------------------------------------------------


def test_response_drift_embeds_the_answers_and_adjusts_for_the_scopes(
    data: Path, run_cli: Any
) -> None:
    rows = _json(
        run_cli,
        data,
        "drift",
        "--kind",
        "response",
        "--by",
        "plant_id,model_version",
        "--baseline",
        BASELINE,
        "--current",
        CURRENT,
        code=1,
    )
    assert {r["kind"] for r in rows} == {"response"}
    assert {(r["scope"], r["model_version"]) for r in rows if r["status"] == "ALERT"} == {
        ("all plants", None),
        ("Plant_C", STABLE),
    }
    # The canary's 52 answers differ alone (p < 0.05) but not once the six scopes are counted:
    # the report says so rather than raising an alert a quiet week would raise as often.
    canary = next(r for r in rows if r["model_version"] == CANARY)
    assert canary["status"] == "OK" and canary["scopes_tested"] == 6
    assert canary["p_value"] < 0.05 < canary["p_adjusted"]
    assert "Benjamini-Hochberg" in canary["note"]
    # Benjamini-Hochberg's values: the i-th smallest of m p-values times m / i, made monotone.
    ps = sorted(r["p_value"] for r in rows)
    bh = [
        min(1.0, min(p * len(ps) / (j + 1) for j, p in enumerate(ps) if j >= i))
        for i in range(len(ps))
    ]
    assert sorted(r["p_adjusted"] for r in rows) == pytest.approx(bh)
    # The answers were embedded on the way: every request of both windows has a vector now.
    s = _settings(data)
    b, c = _windows()
    n = sum(
        len(window_vectors(s, "response", "hashing-384", w.since, w.until).request_ids)
        for w in (b, c)
    )
    assert n == rows[0]["n_baseline"] + rows[0]["n_current"]


# ---- reservoir baselines --------------------------------------------------------------------


def test_reservoir_folds_ok_windows_only_and_survives_a_restart(data: Path, run_cli: Any) -> None:
    s = _settings(data)
    first = update_baselines(s, size=300, until=datetime(2026, 11, 16, tzinfo=UTC))
    assert [(d["scope"], d["window"], d["decision"]) for d in first] == [
        (scope, w, decision)
        for scope in ("Plant_A", "Plant_B", "Plant_C", "Plant_D", ALL_PLANTS)
        for w, decision in (
            ("2026-11-02 .. 2026-11-09", "initial"),
            ("2026-11-09 .. 2026-11-16", "folded"),
        )
    ]
    # Exactly Algorithm R over the folded rows, oldest first, with the reservoir's own seed.
    res, info = load_reservoir(s, "Plant_C", "prompt", "hashing-384") or (None, None)
    assert res is not None and info is not None
    expected = Reservoir(size=300, seed=reservoir_seed(0, "Plant_C", "prompt"))
    for lo, hi in (("2026-11-02", "2026-11-09"), ("2026-11-09", "2026-11-16")):
        w = parse_window_arg(f"{lo}..{hi}", "w")
        v = window_vectors(s, "prompt", "hashing-384", w.since, w.until, "Plant_C")
        expected.add(v.vectors, v.request_ids, v.texts)
    assert res.ids == expected.ids and res.seen == expected.seen == 531

    # The new week against the reservoir: Plant_C drifted. The fleet's window, which holds
    # Plant_C's, alerts alone but not once adjusted for the five scopes tested.
    rows = _json(run_cli, data, "drift", "--baseline", "reservoir", "--current", CURRENT, code=1)
    fleet = rows[0]
    assert fleet["scope"] == "all plants" and fleet["scopes_tested"] == 5
    assert fleet["p_value"] < 0.05 < fleet["p_adjusted"]
    assert fleet["note"].startswith(f"alert alone (p = {fleet['p_value']:.3g}), not over 5 scopes")
    assert {r["scope"]: r["status"] for r in rows} == {
        "all plants": "OK",
        "Plant_A": "OK",
        "Plant_B": "OK",
        "Plant_C": "ALERT",
        "Plant_D": "OK",
    }
    assert rows[1]["baseline"] == "reservoir (300 of 983 rows, 2 windows, through 2026-11-16)"

    # The update folds the week where its own test (one scope at a time: a guard that keeps a
    # drifted week out of the reference) saw no drift, and refuses it elsewhere (exit 1).
    update = _json(run_cli, data, "baseline", "update", "--size", "300", code=1)
    assert {d["scope"]: d["decision"] for d in update} == {
        "Plant_A": "folded",
        "Plant_B": "folded",
        "Plant_C": "drifted",
        "Plant_D": "folded",
        ALL_PLANTS: "drifted",
    }
    c = parse_window_arg(CURRENT, "current")
    week47_c = set(
        window_vectors(s, "prompt", "hashing-384", c.since, c.until, "Plant_C").request_ids
    )
    for scope in ("Plant_C", ALL_PLANTS):
        kept = load_reservoir(s, scope, "prompt", "hashing-384")
        assert kept is not None and week47_c.isdisjoint(kept[0].ids)
    kept_a = load_reservoir(s, "Plant_A", "prompt", "hashing-384")
    assert kept_a is not None and kept_a[0].seen == 983 + 487

    # A new process reads the same reservoirs; a second update has nothing to do.
    files = {p.name: p.read_bytes() for p in reservoir_dir(s).iterdir() if p.suffix == ".npz"}
    shown = {r["scope"]: r for r in _json(run_cli, data, "baseline", "show")}
    assert shown["Plant_C"]["windows_folded"] == 2
    assert shown["Plant_C"]["skipped"] == ["2026-11-16 .. 2026-11-23 (drifted)"]
    assert shown["Plant_A"]["rows_seen"] == 983 + 487
    assert shown["Plant_A"]["folded_through"] == "2026-11-23"
    assert _json(run_cli, data, "baseline", "update", code=0) == []
    assert files == {
        p.name: p.read_bytes() for p in reservoir_dir(s).iterdir() if p.suffix == ".npz"
    }

    # A reservoir that holds the week cannot judge it.
    res_cli = run_cli("drift", "--baseline", "reservoir", "--current", CURRENT, data=data)
    assert res_cli.code == 2 and "already holds" in res_cli.err

    # Pinned: updates leave it alone. Reset: gone, and drift says how to build it.
    assert _json(run_cli, data, "baseline", "pin", "--plant", "Plant_A")["pinned"] is True
    assert shown["Plant_A"]["pinned"] is False
    assert _json(run_cli, data, "baseline", "show")[1]["pinned"] is True
    assert _json(run_cli, data, "baseline", "reset")["reset"] is True
    gone = run_cli(
        "drift", "--baseline", "reservoir", "--current", "2026-11-22..2026-11-23", data=data
    )
    assert gone.code == 2 and "modelwarden baseline update" in gone.err


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--by", "route"), "cannot group drift by 'route'"),
        (("--kind", "tokens"), "kind must be prompt, response or quality"),
        (("--kind", "quality", "--baseline", "a.npy", "--current", "b.npy"), "quality drift"),
    ],
)
def test_bad_drift_input_exits_2(
    data: Path, run_cli: Any, args: tuple[str, ...], needle: str
) -> None:
    res = run_cli("drift", *args, data=data)
    assert res.code == 2
    assert needle in res.err


# ---- HTTP API -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http(data: Path) -> Iterator[httpx.Client]:
    with (
        ServerThread(create_app(_settings(data))) as srv,
        httpx.Client(base_url=srv.url, timeout=300) as client,
    ):
        yield client


def test_api_drift_per_version_and_history_are_the_librarys(data: Path, http: httpx.Client) -> None:
    params = {
        "baseline": BASELINE,
        "current": CURRENT,
        "version": CANARY,
        "method": "centroid_euclidean",
        "kind": "response",
    }
    resp = http.get("/v1/drift", params=params)
    assert resp.status_code == 200, resp.text
    b, c = _windows()
    lib = drift_over_windows(
        _settings(data),
        b,
        c,
        version=CANARY,
        kind="response",
        method="centroid_euclidean",
        record=False,
    )
    assert resp.json() == json.loads(json.dumps(lib, default=str))
    hist = http.get("/v1/drift/history", params={"version": CANARY, "kind": "response"})
    assert hist.status_code == 200
    assert hist.json() == json.loads(
        json.dumps(read_history(_settings(data), version=CANARY, kind="response"), default=str)
    )
    assert {p["method"] for p in hist.json()} >= {"centroid_euclidean"}
    bad = http.get("/v1/drift", params={"by": "route"})
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "by"
    bad = http.get("/v1/drift", params={"kind": "quality", "baseline": "reservoir"})
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "baseline"


# ---- weekly report --------------------------------------------------------------------------


def test_report_has_quality_response_drift_and_the_trend(data: Path) -> None:
    s = _settings(data)
    # A run of week 46 against week 45 puts an earlier point in the history.
    drift_over_windows(
        s, parse_window_arg("2026-W45", "b"), parse_window_arg("2026-W46", "c"), kind="response"
    )
    drift_over_windows(s, parse_window_arg("2026-W45", "b"), parse_window_arg("2026-W46", "c"))
    rep = build_weekly_report(s, "2026-W47", embedder="hashing")
    assert {r["kind"] for r in rep.response_drift} == {"response"}
    assert ("Plant_B", CANARY, "safety_rate", "ALERT") in {
        (r["scope"], r["model_version"], r["method"], r["status"]) for r in rep.quality_drift
    }
    assert any(f.startswith("Quality drift at Plant_B / sop-assistant-v1.2") for f in rep.findings)
    weeks = {(t["kind"], t["scope"], t["week"]) for t in rep.drift_trend}
    for kind in ("prompt", "response"):
        for week in ("2026-W46", "2026-W47"):
            assert (kind, "Plant_C", week) in weeks
    md = render_markdown(rep)
    assert "### Quality drift" in md and "### Response drift" in md
    assert "| Kind | Scope | 2026-W46 | 2026-W47 |" in md
