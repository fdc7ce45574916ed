"""``modelwarden review`` through the real command: sample, the terminal loop fed by piped stdin,
scripted submits, status, agreement, export and import."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from modelwarden.evals.golden import starter_set
from modelwarden.evals.runner import RunOptions, run_eval
from modelwarden.gateway import fake_upstream
from modelwarden.governance import audit
from modelwarden.governance.keys import create_key
from modelwarden.review.queue import list_reviews
from modelwarden.review.reliability import agreement_report
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

# One item's answers as typed: correctness, safety, helpfulness, issue, comment.
TYPED = ["5", "yes", "4", "none", ""]


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory, run_cli: Any) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("reviewcli")
    data = root / "warden-data"
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    state = StateStore.at(data)
    with ServerThread(fake_upstream.create_app("v-good", latency_ms=0)) as srv:
        run_eval(
            settings,
            starter_set(),
            RunOptions.build(model="v-good", name="GOOD", endpoint=f"{srv.url}/v1"),
            state=state,
        )
    state.close()
    res: dict[str, Any] = {"root": root, "data": data}

    def cli(*args: str, stdin: str | None = None, at: Path = data) -> Any:
        return run_cli(*args, data=at, stdin=stdin, cwd=root)

    res["sample"] = cli(
        "review",
        "sample",
        "--from",
        "GOOD",
        "--n",
        "6",
        "--reviewers",
        "2",
        "--gold",
        "2",
        "--queue",
        "q",
        "--seed",
        "3",
        "--format",
        "json",
    )
    # ann reviews everything in one sitting; one answer is out of range and asked again.
    ann = ["9", *TYPED] + TYPED * 7
    res["ann"] = cli(
        "review", "next", "--reviewer", "ann", "--queue", "q", stdin="\n".join(ann) + "\n"
    )
    # bob reviews two items, then types q.
    res["bob_first"] = cli(
        "review", "next", "-r", "bob", "-q", "q", stdin="\n".join(TYPED * 2 + ["4", "q"]) + "\n"
    )
    res["bob_json"] = cli("review", "next", "-r", "bob", "-q", "q", "--format", "json")
    item = json.loads(res["bob_json"].out)
    answers = json.dumps({"correctness": 4, "safety": True, "helpfulness": 4, "issue": "none"})
    res["bob_submit"] = cli(
        "review",
        "submit",
        "-r",
        "bob",
        "--item",
        item["item_id"],
        "--answers",
        answers,
        "--format",
        "json",
    )
    res["bob_rest"] = cli(
        "review",
        "next",
        "-r",
        "bob",
        "-q",
        "q",
        "--limit",
        "5",
        stdin="\n".join(["3", "no", "2", "unsafe", "risky"] * 6) + "\n",
    )
    export = root / "exports" / "q.jsonl"
    other = root / "other-data"

    def transfer() -> dict[str, Any]:
        out = {"export": cli("review", "export", "--out", str(export), "--queue", "q")}
        out["import"] = cli("review", "import", str(export), "--format", "json", at=other)
        out["import_again"] = cli("review", "import", str(export), "--format", "json", at=other)
        out["agreement_other"] = cli("review", "agreement", "-q", "q", "--format", "json", at=other)
        return out

    with ThreadPoolExecutor(max_workers=3) as pool:
        jobs = {
            "transfer": pool.submit(transfer),
            "status": pool.submit(cli, "review", "status", "-q", "q", "--format", "json"),
            "agreement": pool.submit(cli, "review", "agreement", "-q", "q", "--format", "json"),
            "agreement_table": pool.submit(cli, "review", "agreement", "-q", "q", "--strict"),
            "missing": pool.submit(cli, "review", "next", "-r", "ann", "-q", "nope"),
            "bob_bad": pool.submit(
                cli,
                "review",
                "submit",
                "-r",
                "bob",
                "--item",
                item["item_id"],
                "--answers",
                '{"correctness": 4}',
            ),
            # Input that ends halfway through an item saves nothing for it.
            "cy_eof": pool.submit(cli, "review", "next", "-r", "cy", "-q", "q", stdin="4\nyes\n"),
        }
        res.update({k: f.result() for k, f in jobs.items()})
    res.update(res.pop("transfer"))
    res["item"] = item
    return res


def test_sample_builds_the_queue(flow: dict[str, Any]) -> None:
    res = flow["sample"]
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["added"] == {"single": 6, "gold": 2} and out["reviewers_per_item"] == 2


def test_the_terminal_loop_reads_answers_from_stdin(flow: dict[str, Any]) -> None:
    ann = flow["ann"]
    assert ann.code == 0, ann.err
    assert "must be from 1 to 5" in ann.out
    assert "8 review(s) saved." in ann.out and "No more items for ann in queue q." in ann.out
    assert len(re.findall(r"saved review \d+ for item", ann.out)) == 8
    assert "reference answer" in ann.out  # items from a run show their reference
    first = flow["bob_first"]
    assert first.code == 0, first.err
    assert "stopped" in first.out and "2 review(s) saved." in first.out
    eof = flow["cy_eof"]
    assert eof.code == 0 and "input ended" in eof.out and "0 review(s) saved." in eof.out
    rest = flow["bob_rest"]
    assert rest.code == 0, rest.err
    # 8 items: 2 in the first sitting, 1 by submit, the other 5 now, where --limit stops.
    assert "5 review(s) saved." in rest.out and "No more items" not in rest.out


def test_scripted_next_and_submit(flow: dict[str, Any]) -> None:
    item = flow["item"]
    assert set(item) >= {"item_id", "prompt", "response", "rubric", "progress"}
    sub = flow["bob_submit"]
    assert sub.code == 0, sub.err
    review = json.loads(sub.out)
    assert review["created"] is True and review["reviewer"] == "bob"
    assert review["answers"] == {
        "correctness": 4,
        "safety": True,
        "helpfulness": 4,
        "issue": "none",
    }
    bad = flow["bob_bad"]
    assert bad.code == 2 and "safety: is required" in bad.err and "Traceback" not in bad.err


def test_status_and_agreement(flow: dict[str, Any]) -> None:
    status = json.loads(flow["status"].out)
    # cy, asking at the same time, never answers: no review of cy's counts anywhere.
    assert status["reviews"] == 16 and status["complete_items"] == 6
    assert status["reviewers"] == {"ann": 8, "bob": 8} and status["reviews_needed"] == 0
    rep = json.loads(flow["agreement"].out)
    state = StateStore.at(flow["data"])
    try:
        direct = agreement_report(state, "q")
        reviews = list_reviews(state, "q")
    finally:
        state.close()
    assert [(d["name"], d["alpha"]) for d in rep["dimensions"]] == [
        (d["name"], d["alpha"]) for d in direct["dimensions"]
    ]
    assert len(reviews) == 16
    # ann always said 5/safe and bob 3/unsafe on the items he reviewed last: no agreement.
    assert "safety" in rep["unreliable"]
    table = flow["agreement_table"]
    assert table.code == 1 and "unreliable" in table.err
    gold = {g["reviewer"]: g for g in rep["gold"]}
    assert set(gold) == {"ann", "bob"} and gold["ann"]["items"] == 2


def test_export_and_import_round_trip(flow: dict[str, Any]) -> None:
    assert flow["export"].code == 0, flow["export"].err
    assert "1 queue(s), 8 item(s), 16 review(s)" in flow["export"].out
    first, again = json.loads(flow["import"].out), json.loads(flow["import_again"].out)
    assert (first["items_created"], first["reviews_created"]) == (8, 16)
    assert (again["items_created"], again["reviews_created"], again["reviews_already_here"]) == (
        0,
        0,
        16,
    )
    assert json.loads(flow["agreement_other"].out) == json.loads(flow["agreement"].out)


def test_unknown_queue_is_bad_input(flow: dict[str, Any]) -> None:
    res = flow["missing"]
    assert res.code == 2 and "no review queue 'nope'" in res.err


def test_a_key_owns_the_queue_it_samples_and_alone_sees_its_agreement(
    flow: dict[str, Any], run_cli: Any
) -> None:
    state = StateStore.at(flow["data"])
    try:
        ops_secret, ops = create_key(state, "operator", name="ops-owner")
        dee_secret, dee = create_key(state, "reviewer", name="dee")
    finally:
        state.close()

    def cli(*args: str) -> Any:
        return run_cli(*args, data=flow["data"], cwd=flow["root"])

    made = cli("review", "sample", "--from", "GOOD", "--n", "2", "-q", "owned", "--key", ops_secret)
    assert made.code == 0, made.err
    queues = {q["name"]: q for q in json.loads(cli("review", "queues", "--format", "json").out)}
    assert queues["owned"]["owner_key_id"] == ops.id and queues["q"]["owner_key_id"] is None
    assert cli("review", "agreement", "-q", "owned", "--key", ops_secret).code == 0
    # The local command line without a key sees every queue, as it always has.
    assert cli("review", "status", "-q", "owned").code == 0
    for command in ("agreement", "status"):
        refused = cli("review", command, "-q", "owned", "--key", dee_secret)
        assert refused.code == 2 and "shown to its owner" in refused.err, refused.err
    state = StateStore.at(flow["data"])
    try:
        entries = audit.entries(state, action="auth.refused", subject="review queue owned")
    finally:
        state.close()
    assert [e.actor for e in entries] == [dee.actor, dee.actor]
    assert [e.evidence["what"] for e in entries] == ["agreement", "progress"]
