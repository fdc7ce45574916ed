"""The ``modelwarden eval`` commands end to end, against ``modelwarden fake-upstream`` servers.

One module fixture starts a good and a poor fake upstream as real processes and runs the whole
flow through the CLI once; the tests assert on its results.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from serveproc import Proc

from modelwarden.evals.compare import GateSpec
from modelwarden.evals.golden import load_golden, starter_set
from modelwarden.governance.scorecard import default_gate
from modelwarden.server.runner import free_port

CLI = str(Path(sys.executable).parent / "modelwarden")
GOOD, POOR = "sop-assistant-v1.1", "sop-assistant-v1.2"
PARALLEL = 3


class Upstream(Proc):
    """``modelwarden fake-upstream`` serving one version at one quality."""

    def __init__(self, version: str, quality: str) -> None:
        super().__init__(
            "fake-upstream", "--version", version, "--quality", quality, "--latency-ms", "2"
        )

    def served(self) -> int:
        return int(self.health()["requests"])


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Upstream]]:
    ups = {"good": Upstream(GOOD, "good"), "poor": Upstream(POOR, "poor")}
    try:
        for u in ups.values():
            u.wait()
        yield ups
    finally:
        for u in ups.values():
            u.stop()


@pytest.fixture(scope="module")
def flow(
    tmp_path_factory: pytest.TempPathFactory, run_cli: Any, upstreams: dict[str, Upstream]
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("evalflow")
    data = root / "warden-data"
    good, poor = upstreams["good"], upstreams["poor"]
    res: dict[str, Any] = {"root": root, "data": data}

    def cli(*args: str) -> Any:
        return run_cli(*args, data=data, cwd=root)

    def run(model: str, url: str, name: str, *extra: str) -> Any:
        return cli(
            "eval",
            "run",
            "--golden",
            "golden.jsonl",
            "--model",
            model,
            "--endpoint",
            f"{url}/v1",
            "--name",
            name,
            "--format",
            "json",
            *extra,
        )

    def parallel(jobs: dict[str, Any]) -> None:
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            futures = {k: pool.submit(job) for k, job in jobs.items()}
            res.update({k: f.result() for k, f in futures.items()})

    def good_runs() -> dict[str, Any]:
        out = {"good": run(GOOD, good.url, "GOOD")}
        out["served_after_good"] = good.served()
        out["good2"] = run(GOOD, good.url, "GOOD2")
        out["served_after_good2"] = good.served()
        return out

    gate = str(root / "gates" / "release.yaml")
    parallel(
        {
            "init": lambda: cli("eval", "init"),
            "gate_init": lambda: cli("eval", "gate-init", "--out", "gates/release.yaml"),
            # Creates the state store before commands run side by side on it.
            "list_empty": lambda: cli("eval", "list", "--format", "json"),
        }
    )
    parallel(
        {
            "chain": good_runs,
            "poor": lambda: run(POOR, poor.url, "POOR", "--concurrency", "4"),
            "init_again": lambda: cli("eval", "init"),
        }
    )
    res.update(res.pop("chain"))
    parallel(
        {
            "cmp_regression": lambda: cli(
                "eval", "compare", "GOOD", "POOR", "--gate", gate, "--format", "json"
            ),
            "cmp_aa": lambda: cli("eval", "compare", "GOOD", "GOOD2", "--gate", gate),
            "cmp_junit": lambda: cli(
                "eval",
                "compare",
                "GOOD",
                "POOR",
                "--gate",
                gate,
                "--format",
                "junit",
                "--out",
                "reports/gate.xml",
            ),
            "cmp_md": lambda: cli(
                "eval",
                "compare",
                "GOOD",
                "POOR",
                "--gate",
                gate,
                "--slice",
                "topic",
                "--out",
                "reports/gate.md",
            ),
            "list": lambda: cli("eval", "list", "--format", "json"),
            "show": lambda: cli("eval", "show", "POOR", "--format", "json"),
            "show_table": lambda: cli("eval", "show", "GOOD2", "--no-items"),
            "card_json": lambda: cli("eval", "scorecard", POOR, "--format", "json"),
            "card_md": lambda: cli("eval", "scorecard", POOR, "--out", "cards/poor.md"),
        }
    )
    return res


def test_init_writes_the_starter_set_and_the_default_gate(flow: dict[str, Any]) -> None:
    assert flow["init"].code == 0, flow["init"].err
    gs = load_golden(flow["root"] / "golden.jsonl")
    assert gs.content_hash == starter_set().content_hash and len(gs) == 64
    assert flow["init_again"].code == 2 and "--force" in flow["init_again"].err
    assert flow["gate_init"].code == 0, flow["gate_init"].err
    gate = GateSpec.load(flow["root"] / "gates" / "release.yaml")
    assert gate == default_gate()
    assert {f.metric for f in gate.floors} == {"must_include", "semantic"}
    assert {n.metric for n in gate.non_inferiority} == {"rougeL", "chrf"}
    assert {(h.violation, h.max_count) for h in gate.hard} == {("safety", 0), ("forbidden", 0)}


def test_runs_against_good_and_poor_upstreams(flow: dict[str, Any]) -> None:
    for key in ("good", "good2", "poor"):
        assert flow[key].code == 0, flow[key].err
    good, poor = json.loads(flow["good"].out), json.loads(flow["poor"].out)
    assert (good["n_answered"], good["n_requests"], good["n_cached"]) == (64, 64, 0)
    assert good["corpus"]["must_include"] == 1.0 and good["corpus"]["semantic"] > 0.99
    assert poor["model"] == POOR and poor["corpus"]["must_include"] < 0.2
    assert poor["corpus"]["rougeL"] < good["corpus"]["rougeL"] - 0.5
    assert poor["params"]["concurrency"] == 4


def test_a_cached_rerun_sends_no_request(flow: dict[str, Any]) -> None:
    assert flow["served_after_good"] == 64
    # The second run is answered entirely from the cache: the server sees nothing more.
    assert flow["served_after_good2"] == 64
    good2 = json.loads(flow["good2"].out)
    assert (good2["n_cached"], good2["n_requests"], good2["n_answered"]) == (64, 0, 64)
    assert good2["corpus"] == json.loads(flow["good"].out)["corpus"]


def test_compare_good_with_poor_fails_the_gate(flow: dict[str, Any]) -> None:
    res = flow["cmp_regression"]
    assert res.code == 1, res.err
    out = json.loads(res.out)
    assert out["passed"] is False and out["labels"] == {"a": "GOOD", "b": "POOR"}
    verdicts = {c["name"]: c["passed"] for c in out["checks"]}
    assert verdicts["floor must_include >= 0.8"] is False
    assert verdicts["floor semantic >= 0.7"] is False
    assert verdicts["non-inferiority rougeL margin 0.03"] is False
    assert verdicts["hard safety <= 0"] is True
    assert "gate release-gate FAILED" in res.err


def test_an_a_a_comparison_passes(flow: dict[str, Any]) -> None:
    res = flow["cmp_aa"]
    assert res.code == 0, res.err
    assert "gate release-gate PASSED: GOOD2 vs GOOD" in res.err
    rows = [ln for ln in res.out.splitlines() if "non-inferiority rougeL margin 0.03" in ln]
    assert len(rows) == 1 and "pass" in rows[0] and "delta +0 (GOOD2 - GOOD)" in rows[0]


def test_compare_writes_junit_and_markdown(flow: dict[str, Any]) -> None:
    assert flow["cmp_junit"].code == 1
    assert "reports/gate.xml" in flow["cmp_junit"].err
    suite = ET.parse(flow["root"] / "reports" / "gate.xml").getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("tests", 0)) == 7 and int(suite.get("failures", 0)) == 4
    md = flow["cmp_md"]
    assert md.code == 1 and "reports/gate.md" in md.err
    assert "floor must_include >= 0.8" in md.out and "topic=lubrication" in md.out
    text = (flow["root"] / "reports" / "gate.md").read_text()
    assert text.startswith("## POOR vs GOOD: gate release-gate FAILED")
    assert "| rougeL | topic=lubrication | 4 |" in text


def test_list_and_show(flow: dict[str, Any]) -> None:
    assert flow["list_empty"].code == 0 and json.loads(flow["list_empty"].out) == []
    assert flow["list"].code == 0, flow["list"].err
    runs = json.loads(flow["list"].out)
    names = [r["name"] for r in runs]
    assert sorted(names) == ["GOOD", "GOOD2", "POOR"]
    assert names.index("GOOD2") < names.index("GOOD")
    assert [r["created_at"] for r in runs] == sorted((r["created_at"] for r in runs), reverse=True)
    shown = json.loads(flow["show"].out)
    assert shown["name"] == "POOR" and len(shown["items"]) == 64
    item = shown["items"][0]
    assert item["item_id"] == "lubrication.conveyor" and item["latency_ms"] >= 2
    assert item["metrics"]["must_include"] == 0.0
    assert flow["show_table"].code == 0 and "Run " in flow["show_table"].out
    assert "(GOOD2)" in flow["show_table"].out and "Corpus metrics" in flow["show_table"].out


def test_scorecard_of_the_candidate(flow: dict[str, Any]) -> None:
    assert flow["card_json"].code == 0, flow["card_json"].err
    card = json.loads(flow["card_json"].out)
    assert card["version"] == POOR and card["run"]["name"] == "POOR"
    assert card["gate"]["passed"] is False and card["gate"]["baseline"] == "GOOD"
    must = next(m for m in card["metrics"] if m["metric"] == "must_include")
    assert must["n"] == 64 and must["mean"] < 0.2
    assert flow["card_md"].code == 0, flow["card_md"].err
    md = (flow["root"] / "cards" / "poor.md").read_text()
    assert md.startswith(f"# Scorecard: {POOR}") and "**FAILED** against baseline **GOOD**" in md


def test_errors_exit_2_without_a_traceback(
    flow: dict[str, Any], run_cli: Any, upstreams: dict[str, Upstream]
) -> None:
    data, root = flow["data"], flow["root"]
    (root / "bad-gate.yaml").write_text("floors: [{metric: rougeL}]\n")
    (root / "bad.jsonl").write_text('{"id": "x", "prompt": "p"}\n')
    cases = [
        ("eval", "show", "no-such-run"),
        ("eval", "compare", "GOOD", "POOR", "--gate", str(root / "bad-gate.yaml")),
        ("eval", "run", "--golden", str(root / "bad.jsonl"), "--model", "m"),
        (
            "eval",
            "run",
            "--golden",
            str(root / "golden.jsonl"),
            "--model",
            GOOD,
            "--endpoint",
            f"{upstreams['good'].url}/v1",
            "--name",
            "GOOD",
        ),
        (
            "eval",
            "run",
            "--golden",
            str(root / "golden.jsonl"),
            "--model",
            "m",
            "--endpoint",
            f"http://127.0.0.1:{free_port()}/v1",
            "--retries",
            "0",
            "--no-cache",
        ),
    ]
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        results = list(pool.map(lambda args: run_cli(*args, data=data, cwd=root), cases))
    for args, res in zip(cases, results, strict=True):
        assert res.code == 2, (args, res.out, res.err)
        assert "Traceback" not in res.err and "error" in res.err, args
    assert "exists already" in results[3].err
    assert "answered none of the 64 items" in results[4].err
