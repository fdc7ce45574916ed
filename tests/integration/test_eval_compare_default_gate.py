"""``eval compare`` without ``--gate`` judges the default gate (the one ``eval gate-init``
writes) and says so: a candidate that lost a third of the required facts fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalruns import run_row

from modelwarden.evals.store import insert_run
from modelwarden.store.state import StateStore

N = 30


def _store_run(data_dir: Path, name: str, facts_found: float) -> None:
    items = [
        {
            "item_id": f"q{i}",
            "position": i,
            "prompt": f"question {i}",
            "reference": "ref",
            "output": "answer",
            "error": None,
            "metrics": {
                "must_include": facts_found,
                "semantic": 0.9,
                "rougeL": 0.6 + 0.01 * (i % 3),
                "chrf": 60.0 + (i % 3),
            },
            "violations": {"safety": False, "forbidden": False},
            "tags": {},
            "details": {},
            "latency_ms": 100.0,
            "attempts": 1,
            "cached": False,
        }
        for i in range(N)
    ]
    st = StateStore.at(data_dir)
    try:
        insert_run(st, run_row(name, name, N, embedder="hashing-384"), items)
    finally:
        st.close()


def test_compare_without_a_gate_applies_the_default_gate(run_cli: Any, data_dir: Path) -> None:
    _store_run(data_dir, "v-full", 1.0)
    _store_run(data_dir, "v-lost-a-third", 2 / 3)
    res = run_cli("eval", "compare", "v-full", "v-lost-a-third", data=data_dir)
    assert res.code == 1, res.out + res.err
    assert "gate release-gate FAILED" in res.err
    assert "gate used: the default gate, as modelwarden eval gate-init writes it" in res.err
    assert "must_include" in res.err
    same = run_cli("eval", "compare", "v-full", "v-full", data=data_dir)
    assert same.code == 0, same.out + same.err
    assert "gate release-gate PASSED" in same.err and "default gate" in same.err


def test_a_gate_file_is_named_when_given(run_cli: Any, data_dir: Path, tmp_path: Path) -> None:
    _store_run(data_dir, "v-full", 1.0)
    _store_run(data_dir, "v-lost-a-third", 2 / 3)
    gate = tmp_path / "hard-only.yaml"
    gate.write_text("name: hard-only\n", encoding="utf-8")
    res = run_cli("eval", "compare", "v-full", "v-lost-a-third", "--gate", str(gate), data=data_dir)
    assert res.code == 0, res.out + res.err
    assert "gate hard-only PASSED" in res.err and f"gate used: from {gate}" in res.err
