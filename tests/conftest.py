"""Shared fixtures: a data directory, the real ``modelwarden`` command, and one seeded dataset.

The seeded dataset is three weeks of simulated traffic from four plants with the drift and the
incident scenarios, ingested once per session into a real store with the hashing embedder (the
real MiniLM model has its own tests).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest
from pgserver import USER as PG_USER
from pgserver import PgServer, pg_bin
from pytest_postgresql.janitor import DatabaseJanitor

from modelwarden.embed.service import embed_missing
from modelwarden.ingest.core import Ingestor
from modelwarden.safety.service import safety_checker
from modelwarden.settings import Settings
from modelwarden.simulate.traffic import SimulatedData, simulate
from modelwarden.store.reads import open_store
from modelwarden.store.state import StateStore

SIM_DAYS = 21
SIM_SEED = 3
SIM_SCENARIOS = ("drift", "incident")
SIM_END = datetime(2026, 11, 23, tzinfo=UTC)
PG_TEMPLATE = "warden_template"


def _cli_path() -> str:
    beside = Path(sys.executable).parent / "modelwarden"
    if beside.exists():
        return str(beside)
    found = shutil.which("modelwarden")
    if found is None:  # pragma: no cover - the package is installed in the venv
        raise RuntimeError("the modelwarden console script is not installed")
    return found


CLI = _cli_path()


class CliResult(NamedTuple):
    code: int
    out: str
    err: str


RunCli = Callable[..., CliResult]


def _run_cli(
    *args: str,
    data: Path | str | None = None,
    embedder: str | None = "hashing",
    stdin: bytes | str | None = None,
    cwd: Path | str | None = None,
    timeout: float = 120,
    state_url: str | None = None,
) -> CliResult:
    """Run the installed ``modelwarden`` script; returns (exit code, stdout, stderr)."""
    env = dict(os.environ)
    for var in ("MODELWARDEN_DATA", "MODELWARDEN_EMBEDDER", "MODELWARDEN_STATE_URL"):
        env.pop(var, None)
    env.pop("MODELWARDEN_CONFIG", None)
    if embedder is not None:
        env["MODELWARDEN_EMBEDDER"] = embedder
    if state_url is not None:
        env["MODELWARDEN_STATE_URL"] = state_url
    # Wide, plain output so that table cells are not wrapped or coloured.
    env.update(COLUMNS="250", NO_COLOR="1", TERM="dumb", PYTHONIOENCODING="utf-8")
    cmd = [CLI, *(["--data", str(data)] if data is not None else []), *args]
    proc = subprocess.run(
        cmd,
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )
    return CliResult(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


@pytest.fixture(scope="session")
def run_cli() -> RunCli:
    """``run_cli(*args, data=DIR, embedder="hashing", stdin=None, state_url=None)`` → (code,
    stdout, stderr)."""
    return _run_cli


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data directory of its own for one test."""
    d = tmp_path / "warden-data"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def sim_data() -> SimulatedData:
    """Three weeks of seeded traffic ending Monday 2026-11-23 00:00 UTC (ISO weeks 45-47)."""
    return simulate(days=SIM_DAYS, seed=SIM_SEED, scenarios=SIM_SCENARIOS, end=SIM_END)


@pytest.fixture(scope="session")
def seeded_data_dir(tmp_path_factory: pytest.TempPathFactory, sim_data: SimulatedData) -> Path:
    """A data directory holding ``sim_data`` and its hashing prompt embeddings. Read only."""
    data = tmp_path_factory.mktemp("seeded") / "warden-data"
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    ingestor = Ingestor(open_store(settings), safety_checker(settings))
    for kind, rows in (
        ("requests", sim_data.requests),
        ("feedback", sim_data.feedback),
        ("escalations", sim_data.escalations),
    ):
        report = ingestor.ingest_raw(
            kind, [(f"record {i + 1}", r) for i, r in enumerate(rows)], source="simulate"
        )
        assert (report.accepted, report.rejected) == (len(rows), 0), report.first_rejections
    emb = embed_missing(settings, "prompt")
    assert emb.missing == len(sim_data.requests)
    return data


# ---- the state store on SQLite and on PostgreSQL ----------------------------------------------
@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the session, with a migrated template database to copy."""
    bin_dir = pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql, or set PG_BIN)")
    server = PgServer.start(bin_dir)
    try:
        with DatabaseJanitor(
            user=PG_USER, host="127.0.0.1", port=server.port, dbname=PG_TEMPLATE
        ) as _:
            StateStore(server.url(PG_TEMPLATE)).close()
            yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_database(pg_server: PgServer) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of its own for one test: its URL."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with DatabaseJanitor(
        user=PG_USER,
        host="127.0.0.1",
        port=pg_server.port,
        dbname=name,
        template_dbname=PG_TEMPLATE,
    ):
        yield pg_server.url(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The state store's URL: a SQLite file of the test's own, or a PostgreSQL database.

    A PostgreSQL store opened by URL alone has no data directory for its secrets (the audit
    key), so the test names one, as an installation would with MODELWARDEN_SECRETS.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    monkeypatch.setenv("MODELWARDEN_SECRETS", str(tmp_path / "secrets"))
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture(scope="session")
def spark_master() -> Iterator[str]:
    """The one Spark session of a test run (local[2]; the JVM takes about ten seconds to start)."""
    from modelwarden.store.engines import spark_session, stop_spark

    master = "local[2]"
    spark_session(master)
    yield master
    stop_spark()
