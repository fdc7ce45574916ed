"""The README's commands, run as written, in a fresh directory, with the real embedding model."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def readme_block(heading: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, f"no bash block under {heading}"
    return [ln.strip() for ln in block.group(1).splitlines() if ln.strip()]


def test_quickstart_names_the_two_commands() -> None:
    lines = readme_block("## Quickstart")
    assert [ln.split("#")[0].strip() for ln in lines] == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_command_line_section_runs_as_written(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MODELWARDEN_DATA": str(tmp_path / "warden-data"),
    }
    env.pop("MODELWARDEN_EMBEDDER", None)
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    for line in readme_block("## Command line"):
        argv = shlex.split(line)
        assert argv[0] == "modelwarden", line
        proc = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        # drift answers 1 when it finds drift; every other command must succeed.
        allowed = {0, 1} if argv[1] == "drift" else {0}
        assert proc.returncode in allowed, f"{line}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, line
        outputs[argv[1] if argv[1] != "ingest" else line] = proc
    assert (tmp_path / "logs.jsonl").exists()
    assert "accepted" in outputs["modelwarden ingest logs.jsonl"].stdout
    assert "Plant_A" in outputs["kpis"].stdout and "sop-assistant-v1.2" in outputs["kpis"].stdout
    # The simulated drift at Plant_C in the last week is in the drift table.
    assert "Plant_C" in outputs["drift"].stdout
    reports = list((tmp_path / "warden-data" / "reports").glob("weekly-*.md"))
    assert len(reports) == 1
    text = reports[0].read_text()
    assert "## 1. Key Performance Indicators (KPIs)" in text
    assert "P95 Latency (ms)" in text and "all-MiniLM-L6-v2" in text
