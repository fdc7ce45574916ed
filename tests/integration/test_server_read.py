"""The read API answers what the CLI's ``--format json`` prints, on the same seeded store."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwarden.drift.monitor import drift_over_windows
from modelwarden.server.app import create_app
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.windows import parse_window_arg


@pytest.fixture(scope="module")
def served(
    seeded_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, httpx.Client]]:
    # The seeded store is shared and read only; the server writes its state and spool beside it.
    data = tmp_path_factory.mktemp("read-api") / "warden-data"
    shutil.copytree(seeded_data_dir, data)
    app = create_app(Settings(data_dir=data, embedder="hashing", embed_threads=1))
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as http:
        yield data, http


def same(api: Any, cli: Any) -> None:
    """Equal, except floats to 1e-9: DuckDB's parallel sums may differ in the last bits."""
    if isinstance(cli, float) and isinstance(api, float):
        assert api == pytest.approx(cli, rel=1e-9, abs=1e-12)
    elif isinstance(cli, dict):
        assert isinstance(api, dict) and list(api) == list(cli)
        for k in cli:
            same(api[k], cli[k])
    elif isinstance(cli, list):
        assert isinstance(api, list) and len(api) == len(cli)
        for a, c in zip(api, cli, strict=True):
            same(a, c)
    else:
        assert api == cli


def cli_json(run_cli: Any, data: Path, *args: str) -> Any:
    res = run_cli(*args, "--format", "json", data=data)
    assert res.code in (0, 1), res.err
    return json.loads(res.out)


def test_kpis_match_the_cli(served: tuple[Path, httpx.Client], run_cli: Any) -> None:
    data, http = served
    params = {"window": "week", "by": "plant_id,model_version", "since": "2026-11-09"}
    resp = http.get("/v1/kpis", params=params)
    assert resp.status_code == 200, resp.text
    api = resp.json()
    cli = cli_json(
        run_cli,
        data,
        "kpis",
        "--window",
        "week",
        "--by",
        "plant_id,model_version",
        "--since",
        "2026-11-09",
    )
    same(api, cli)
    assert {r["plant_id"] for r in api} == {"Plant_A", "Plant_B", "Plant_C", "Plant_D"}
    assert sum(r["requests"] for r in api) > 0


def library_json(value: Any) -> Any:
    """What the CLI's ``--format json`` prints for a library result."""
    return json.loads(json.dumps(value, default=str))


def test_drift_is_the_library_result(served: tuple[Path, httpx.Client]) -> None:
    data, http = served
    resp = http.get("/v1/drift", params={"baseline": "2026-W45..2026-W46", "current": "2026-W47"})
    assert resp.status_code == 200, resp.text
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    rows = drift_over_windows(
        settings,
        parse_window_arg("2026-W45..2026-W46", "baseline"),
        parse_window_arg("2026-W47", "current"),
    )
    same(resp.json(), library_json(rows))
    assert [r["scope"] for r in resp.json()] == [
        "all plants",
        "Plant_A",
        "Plant_B",
        "Plant_C",
        "Plant_D",
    ]
    bad = http.get("/v1/drift", params={"baseline": "2026-13-45", "current": "2026-W47"})
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "baseline"


def test_weekly_report_as_json_and_markdown(served: tuple[Path, httpx.Client]) -> None:
    _data, http = served
    resp = http.get("/v1/reports/weekly", params={"week": "2026-W47"})
    assert resp.status_code == 200, resp.text
    api = resp.json()
    kpis = http.get(
        "/v1/kpis",
        params={
            "since": api["start"][:10],
            "until": api["end"][:10],
            "window": "week",
            "by": "plant_id",
        },
    ).json()
    same(api["plants"], kpis)
    assert api["week"] == "2026-W47" and len(api["plants"]) == 4
    assert api["drift_status"] in ("OK", "ALERT")
    md = http.get("/v1/reports/weekly", params={"week": "2026-W47", "format": "md"})
    assert md.headers["content-type"].startswith("text/markdown")
    assert md.text.startswith("# Weekly Manufacturing Copilot Performance Report")
    assert "**Week:** 2026-W47" in md.text
    for p in api["plants"]:
        assert f"| **{p['plant_id']}** | {p['requests']} |" in md.text
    missing = http.get("/v1/reports/weekly", params={"week": "2020-W01"})
    assert missing.status_code == 404
    assert missing.json()["error"]["field"] == "week"
