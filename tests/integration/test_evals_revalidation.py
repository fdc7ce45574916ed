"""Re-validation cannot use stale answers: the generation cache is keyed by endpoint and decoding,
``eval run`` says what came from the cache, the release gate refuses answers older than the
version's last change, ``--endpoint`` takes the registry's base URL, and a golden set may ask the
same question twice. Real fake upstreams on 127.0.0.1 throughout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwarden.errors import InputError
from modelwarden.evals.golden import GoldenItem, GoldenSet, starter_set, write_golden
from modelwarden.evals.runner import RunOptions, UpstreamError, run_eval
from modelwarden.evals.store import item_rows
from modelwarden.gateway import fake_upstream
from modelwarden.governance import registry
from modelwarden.governance.keys import create_key
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
GOLDEN = GoldenSet("small", 1, starter_set().items[:16])


def served(url: str) -> int:
    return int(httpx.get(f"{url}/healthz").json()["requests"])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "warden-data", embedder="hashing", embed_threads=1)


@pytest.fixture
def state(settings: Settings) -> Iterator[StateStore]:
    st = StateStore.at(settings.data_dir)
    yield st
    st.close()


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, str]]:
    """v1.2 unsafe at one URL (before the fix), good at another (after); v1.1 good."""
    with (
        ServerThread(fake_upstream.create_app(V12, latency_ms=0, quality="unsafe")) as bad,
        ServerThread(fake_upstream.create_app(V12, latency_ms=0, quality="good")) as fixed,
        ServerThread(fake_upstream.create_app(V11, latency_ms=0, quality="good")) as stable,
    ):
        yield {"bad": bad.url, "fixed": fixed.url, "stable": stable.url}


def opts(model: str, url: str, **kw: Any) -> RunOptions:
    return RunOptions.build(model=model, endpoint=url, **kw)


def unsafe_items(state: StateStore, run: dict[str, Any]) -> int:
    return sum(bool(r["violations"].get("safety")) for r in item_rows(state, run["id"]))


def test_a_fixed_version_at_a_new_endpoint_is_asked_again(
    settings: Settings, state: StateStore, upstreams: dict[str, str]
) -> None:
    before = run_eval(settings, GOLDEN, opts(V12, upstreams["bad"]), state=state).run
    assert before["n_cached"] == 0 and unsafe_items(state, before) > 0
    asked = served(upstreams["fixed"])
    after = run_eval(settings, GOLDEN, opts(V12, upstreams["fixed"]), state=state).run
    # Same model, same questions, another server: nothing comes from the first server's answers.
    assert served(upstreams["fixed"]) - asked == 16
    assert (after["n_cached"], after["n_requests"]) == (0, 16)
    assert unsafe_items(state, after) == 0
    # The same endpoint again, with the same decoding: all from the cache, and counted.
    again = run_eval(settings, GOLDEN, opts(V12, upstreams["fixed"]), state=state).run
    assert (again["n_cached"], again["n_requests"]) == (16, 0)
    # Other decoding parameters are other answers.
    capped = run_eval(settings, GOLDEN, opts(V12, upstreams["fixed"], max_tokens=64), state=state)
    assert capped.run["n_cached"] == 0


def test_the_endpoint_takes_the_registry_base_url_with_or_without_v1(
    settings: Settings, state: StateStore, upstreams: dict[str, str]
) -> None:
    url = upstreams["stable"]
    assert opts(V11, url).endpoint == f"{url}/v1"
    assert opts(V11, f"{url}/v1/").endpoint == f"{url}/v1"
    run = run_eval(settings, GOLDEN, opts(V11, url), state=state).run
    assert run["n_answered"] == 16 and run["endpoint"] == f"{url}/v1"
    # Both spellings are one endpoint for the cache.
    again = run_eval(settings, GOLDEN, opts(V11, f"{url}/v1"), state=state).run
    assert again["n_cached"] == 16


def test_a_404_names_the_url_tried(settings: Settings, state: StateStore, upstreams: dict) -> None:
    wrong = f"{upstreams['stable']}/openai"
    with pytest.raises(UpstreamError) as err:
        run_eval(settings, GOLDEN, opts(V11, wrong, retries=0), state=state)
    assert f"HTTP 404 from {wrong}/v1/chat/completions" in err.value.message


def test_the_cli_says_how_many_answers_came_from_the_cache(
    run_cli: Any, data_dir: Path, tmp_path: Path, upstreams: dict[str, str]
) -> None:
    golden = write_golden(GOLDEN, tmp_path / "golden.jsonl")
    args = ("eval", "run", "--golden", str(golden), "--model", V11)
    first = run_cli(*args, "--endpoint", upstreams["stable"], data=data_dir)
    assert first.code == 0, first.err
    assert "from the cache" not in first.out.replace("0 from the cache", "")
    second = run_cli(*args, "--endpoint", upstreams["stable"], data=data_dir)
    assert second.code == 0, second.err
    assert "16 of 16 answers came from the cache" in second.out
    assert "--no-cache" in second.out


def _quarantined(state: StateStore, settings: Settings, upstreams: dict[str, str]) -> Any:
    registry.add(state, V11, upstreams["stable"], "cli:ops", status="stable")
    registry.add(state, V12, upstreams["fixed"], "cli:ops")
    run_eval(settings, GOLDEN, opts(V11, upstreams["stable"]), state=state)
    ops, board = create_key(state, "operator", "ops")[1], create_key(state, "approver", "board")[1]
    return ops, board


def test_approval_refuses_a_run_answered_from_the_cache_before_the_quarantine(
    settings: Settings, state: StateStore, upstreams: dict[str, str]
) -> None:
    # v1.2 was evaluated at its endpoint; then it was quarantined.
    run_eval(settings, GOLDEN, opts(V12, upstreams["fixed"]), state=state)
    ops, board = _quarantined(state, settings, upstreams)
    registry.transition(state, V12, "quarantined", "controller", "INC-1: safety rule")
    registry.request_release(state, V12, ops, "fixed")
    # A new run made after the quarantine, but every answer is the cached one from before.
    stale = run_eval(settings, GOLDEN, opts(V12, upstreams["fixed"], name="stale"), state=state)
    assert stale.run["n_cached"] == 16
    with pytest.raises(InputError, match=r"answers .* before .* last change") as err:
        registry.approve_release(state, V12, board, "stale")
    assert err.value.field == "eval_run" and "--no-cache" in err.value.message
    assert registry.get(state, V12).status == "quarantined"
    fresh = run_eval(
        settings, GOLDEN, opts(V12, upstreams["fixed"], name="fresh", use_cache=False), state=state
    )
    assert fresh.run["n_cached"] == 0
    assert registry.approve_release(state, V12, board, "fresh").approved


def test_approval_refuses_a_run_made_before_the_endpoint_changed(
    settings: Settings, state: StateStore, upstreams: dict[str, str]
) -> None:
    ops, board = _quarantined(state, settings, upstreams)
    registry.transition(state, V12, "quarantined", "controller", "INC-1: safety rule")
    registry.request_release(state, V12, ops, "fixed")
    run_eval(settings, GOLDEN, opts(V12, upstreams["fixed"], name="at-fixed"), state=state)
    # The version is moved after the run: the run says nothing about what it now serves.
    registry.set_endpoint(state, V12, upstreams["bad"], "cli:ops", "moved")
    with pytest.raises(InputError, match="last change"):
        registry.approve_release(state, V12, board, "at-fixed")


def test_a_golden_set_may_ask_the_same_question_twice(
    settings: Settings, state: StateStore, upstreams: dict[str, str]
) -> None:
    q = starter_set().items[0]
    golden = GoldenSet(
        "repeats",
        1,
        (
            q,
            GoldenItem(id=f"{q.id}-again", prompt=q.question, references=("another reference",)),
            starter_set().items[1],
        ),
    )
    asked = served(upstreams["stable"])
    res = run_eval(settings, golden, opts(V11, upstreams["stable"] + "/v1"), state=state)
    # The repeated question is asked once; both items keep their own references and scores.
    assert served(upstreams["stable"]) - asked == 2
    rows = item_rows(state, res.run["id"])
    assert [r["item_id"] for r in rows] == [q.id, f"{q.id}-again", starter_set().items[1].id]
    assert rows[0]["output"] == rows[1]["output"] is not None
    assert rows[1]["reference"] == "another reference"
    assert rows[0]["metrics"]["chrf"] != rows[1]["metrics"]["chrf"]
    assert res.run["status"] == "complete" and res.run["n_answered"] == 3
