"""Simple commands start without the heavy numeric stack (scikit-learn, SciPy, PyTorch), and
``--help`` / ``--version`` start without the data stack either (Ibis, DuckDB, SQLAlchemy, pyarrow,
NumPy, FastAPI): that is what keeps them fast.

Each case runs the command's own entry point in a fresh interpreter and reads
``sys.modules`` afterwards: a deterministic check of what was imported, not a timing (the timing is
``bench/cli/run.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

HEAVY = ("sklearn", "scipy", "torch", "sentence_transformers", "matplotlib")
DATA_STACK = ("ibis", "duckdb", "sqlalchemy", "pyarrow", "numpy", "fastapi", "pandas", "polars")
ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys
args, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["modelwarden", *args]
from modelwarden.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
loaded = sorted(m for m in heavy if m in sys.modules)
print("RESULT " + json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


def _run(
    args: list[str], cwd: Path, watch: tuple[str, ...] = HEAVY
) -> tuple[dict[str, object], str]:
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "NO_COLOR": "1"}
    # The code under test is this tree's, whatever the interpreter has installed.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p
    )
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args), json.dumps(watch)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
        env=env,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT ")), proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["ingest", "--help"],
        ["drift", "--help"],
        ["serve", "--help"],
        ["rejected"],
        ["routes", "show"],
    ],
    ids=lambda a: " ".join(a),
)
def test_simple_commands_do_not_import_the_numeric_stack(tmp_path: Path, args: list[str]) -> None:
    data = tmp_path / "warden-data"
    result, _ = _run(["--data", str(data), *args], tmp_path)
    assert result["code"] == 0
    assert result["loaded"] == []


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["ingest", "--help"],
        ["drift", "--help"],
        ["eval", "--help"],
        ["review", "--help"],
        ["registry", "--help"],
        ["rollout", "--help"],
        ["policy", "--help"],
        ["serve", "--help"],
        ["routes", "--help"],
    ],
    ids=lambda a: " ".join(a),
)
def test_help_does_not_import_the_data_stack(tmp_path: Path, args: list[str]) -> None:
    result, out = _run(["--data", str(tmp_path / "d"), *args], tmp_path, HEAVY + DATA_STACK)
    assert result["code"] == 0
    assert result["loaded"] == []
    assert out.strip()
    assert not (tmp_path / "d").exists()  # help touches no data directory


def test_version_is_the_package_version(tmp_path: Path) -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    result, out = _run(["--version"], tmp_path)
    assert result["code"] == 0
    assert out.strip() == f"modelwarden {meta['version']}"


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    # The same probe does report the stack when a command needs it (drift's statistics).
    src = tmp_path / "ref.npy"
    import numpy as np

    np.save(src, np.ones((30, 4), dtype=np.float32))
    result, _ = _run(
        [
            "--data",
            str(tmp_path / "d"),
            "drift",
            "--baseline",
            str(src),
            "--current",
            str(src),
            "--method",
            "classifier",
            "--format",
            "json",
        ],
        tmp_path,
    )
    assert {"scipy", "sklearn"} & set(result["loaded"])
