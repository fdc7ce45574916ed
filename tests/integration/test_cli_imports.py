"""Simple commands start without the heavy numeric stack (scikit-learn, SciPy, PyTorch).

Each case runs the command's own entry point in a fresh interpreter and reads
``sys.modules`` afterwards: a deterministic check of what was imported, not a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("sklearn", "scipy", "torch", "sentence_transformers", "matplotlib")

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


def _run(args: list[str], cwd: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "NO_COLOR": "1"},
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


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
    result = _run(["--data", str(data), *args], tmp_path)
    assert result["code"] == 0
    assert result["loaded"] == []


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    # The same probe does report the stack when a command needs it (drift's statistics).
    src = tmp_path / "ref.npy"
    import numpy as np

    np.save(src, np.ones((30, 4), dtype=np.float32))
    result = _run(
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
