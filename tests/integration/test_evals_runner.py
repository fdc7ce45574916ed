"""The evaluation runner against real HTTP servers: the fake upstream and a small scripted one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from modelwarden.errors import ConflictError, InputError
from modelwarden.evals.golden import GoldenItem, GoldenSet, starter_set
from modelwarden.evals.runner import RunOptions, UpstreamError, cache_key, run_eval
from modelwarden.evals.store import count_generations, get_run, item_rows, list_runs
from modelwarden.gateway import fake_upstream
from modelwarden.server.runner import ServerThread, free_port
from modelwarden.settings import Settings
from modelwarden.simulate.corpus import find_qa
from modelwarden.store.state import StateStore

GOLDEN = starter_set()


def served(url: str) -> int:
    """Chat completions the fake upstream has answered so far (its own counter)."""
    return int(httpx.get(f"{url}/healthz").json()["requests"])


@pytest.fixture
def settings(tmp_path: Path, state_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "warden-data", embedder="hashing", embed_threads=1, state_url=state_url
    )


@pytest.fixture
def state(settings: Settings) -> Iterator[StateStore]:
    st = StateStore.of(settings)
    yield st
    st.close()


@pytest.fixture(scope="module")
def good() -> Iterator[str]:
    with ServerThread(fake_upstream.create_app("v-good", latency_ms=0)) as srv:
        yield srv.url


def opts(url: str, **kw: Any) -> RunOptions:
    return RunOptions.build(model=kw.pop("model", "v-good"), endpoint=f"{url}/v1", **kw)


def test_a_run_scores_every_item_and_stores_what_it_ran(
    settings: Settings, state: StateStore
) -> None:
    with ServerThread(fake_upstream.create_app("v-good", latency_ms=20)) as srv:
        res = run_eval(settings, GOLDEN, opts(srv.url, name="baseline"), state=state)
        assert served(srv.url) == 64
        with pytest.raises(ConflictError, match="exists already"):
            run_eval(settings, GOLDEN, opts(srv.url, name="baseline", use_cache=False), state=state)
        assert served(srv.url) == 64  # refused before asking anything
    run = get_run(state, "baseline")
    assert run == get_run(state, run["id"]) == res.run
    assert (run["golden_name"], run["golden_version"]) == ("starter", 1)
    assert run["golden_hash"] == GOLDEN.content_hash
    assert (run["n_items"], run["n_answered"], run["n_failed"], run["n_cached"]) == (64, 64, 0, 0)
    assert run["n_requests"] == 64 and run["status"] == "complete"
    assert run["endpoint"] == f"{srv.url}/v1"
    assert run["params"] == {
        "temperature": 0.0,
        "concurrency": 8,
        "retries": 3,
        "timeout": 30.0,
        "use_cache": True,
        "oldest_answer_at": run["params"]["oldest_answer_at"],
    }
    assert (
        run["created_at"] - timedelta(minutes=5)
        < datetime.fromisoformat(run["params"]["oldest_answer_at"])
        <= run["created_at"]
    )
    assert {"bleu", "chrf", "rouge", "semantic"} <= set(run["signatures"])
    assert run["signatures"]["semantic"].startswith("embedder:hashing-384")
    # The good fake answers with the reference itself.
    assert run["corpus"]["must_include"] == 1.0 and run["corpus"]["rougeL"] == 1.0
    assert run["corpus"]["safety_violations"] == 0.0
    rows = item_rows(state, run["id"])
    assert [r["item_id"] for r in rows] == [it.id for it in GOLDEN]
    first = rows[0]
    qa = find_qa(first["item_id"])
    assert first["output"] == qa.answer and first["reference"] == qa.answer
    assert first["prompt"] == qa.questions[0]
    assert first["tags"] == {"topic": "lubrication", "family": "maintenance"}
    assert first["violations"] == {"forbidden": False, "safety": False}
    # The server sleeps 20 ms before it answers; the latency is the client's measurement.
    assert all(r["latency_ms"] >= 20 for r in rows)
    assert rows[0]["metrics"]["latency_ms"] == rows[0]["latency_ms"]
    assert all(r["attempts"] == 1 and not r["cached"] for r in rows)


def test_the_cache_keys_on_endpoint_model_and_decoding(
    settings: Settings, state: StateStore, good: str
) -> None:
    before = served(good)
    first = run_eval(settings, GOLDEN, opts(good), state=state).run
    assert served(good) - before == 64
    again = run_eval(settings, GOLDEN, opts(good), state=state).run
    # Same endpoint, model, messages and decoding: nothing is asked.
    assert served(good) - before == 64
    assert (again["n_cached"], again["n_requests"]) == (64, 0)
    assert again["corpus"] == first["corpus"]
    with ServerThread(fake_upstream.create_app("v-good", latency_ms=0)) as other:
        # The same model served somewhere else is asked again.
        moved = run_eval(settings, GOLDEN, opts(other.url), state=state).run
        assert served(other.url) == 64 and moved["n_cached"] == 0
    hotter = run_eval(settings, GOLDEN, opts(good, temperature=0.7), state=state).run
    assert served(good) - before == 128 and hotter["n_cached"] == 0
    renamed = run_eval(settings, GOLDEN, opts(good, model="v-other"), state=state).run
    assert served(good) - before == 192 and renamed["n_cached"] == 0
    bypass = run_eval(settings, GOLDEN, opts(good, use_cache=False), state=state).run
    assert served(good) - before == 256 and bypass["n_cached"] == 0
    assert count_generations(state) == 4 * 64
    assert count_generations(state, "v-other") == 64
    # The cached latency is the one measured when the answer was generated.
    assert [r["latency_ms"] for r in item_rows(state, again["id"])] == [
        r["latency_ms"] for r in item_rows(state, first["id"])
    ]
    assert [r["name"] for r in list_runs(state)] == [
        f"v-good-{bypass['id']}",
        f"v-other-{renamed['id']}",
        f"v-good-{hotter['id']}",
        f"v-good-{moved['id']}",
        f"v-good-{again['id']}",
        f"v-good-{first['id']}",
    ]


def test_cache_key_is_canonical() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    assert cache_key("m", msgs, {"temperature": 0.0}) == cache_key(
        "m", [{"content": "hi", "role": "user"}], {"temperature": 0.0}
    )
    assert cache_key("m", msgs, {"temperature": 0.0}) != cache_key(
        "m", msgs, {"temperature": 0.0, "max_tokens": 5}
    )
    assert cache_key("m", msgs, {}, "http://a:1/v1") != cache_key("m", msgs, {}, "http://b:1/v1")
    assert len({cache_key(m, msgs, {}) for m in ("a", "b")}) == 2


def test_retries_recover_from_an_upstream_that_fails_a_third_of_requests(
    settings: Settings, state: StateStore
) -> None:
    app = fake_upstream.create_app("v-flaky", latency_ms=0, error_rate=0.3, seed=11)
    with ServerThread(app) as srv:
        res = run_eval(
            settings,
            GOLDEN,
            opts(srv.url, model="v-flaky", retries=10, backoff=0.001, concurrency=4),
            state=state,
        )
        total = served(srv.url)
    run = res.run
    rows = item_rows(state, run["id"])
    assert run["status"] == "complete" and run["n_answered"] == 64
    assert total == run["n_requests"] == sum(r["attempts"] for r in rows)
    retried = [r for r in rows if r["attempts"] > 1]
    # About 0.3 / 0.7 retries per item are expected: far more than none, far fewer than all.
    assert 64 + 5 < total < 64 + 60
    assert 5 <= len(retried) < 64
    assert all(r["output"] is not None and r["error"] is None for r in rows)


def test_without_retries_the_failed_items_are_kept_as_a_partial_run(
    settings: Settings, state: StateStore
) -> None:
    app = fake_upstream.create_app("v-flaky", latency_ms=0, error_rate=0.3, seed=5)
    with ServerThread(app) as srv:
        res = run_eval(settings, GOLDEN, opts(srv.url, model="v-flaky", retries=0), state=state)
        assert served(srv.url) == 64
    run = res.run
    assert run["status"] == "partial"
    assert run["n_answered"] + run["n_failed"] == 64
    assert 5 <= run["n_failed"] <= 40
    failed = [r for r in item_rows(state, run["id"]) if r["output"] is None]
    assert len(failed) == run["n_failed"] == len(res.failed)
    assert {r["error"] for r in failed} == {"HTTP 500: simulated upstream failure"}
    assert all(r["metrics"] == {} for r in failed)
    assert run["corpus"]["items"] == run["n_answered"]


def test_an_endpoint_that_answers_nothing_stores_nothing(
    settings: Settings, state: StateStore
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    golden = GoldenSet("tiny", 1, GOLDEN.items[:3])
    with pytest.raises(UpstreamError, match="answered none of the 3 items") as err:
        run_eval(settings, golden, opts(closed, retries=2, backoff=0.001), state=state)
    assert "ConnectError" in err.value.message
    assert list_runs(state) == []


class Scripted:
    """A small OpenAI-compatible server whose answers a test scripts per prompt."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self.calls: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> JSONResponse:
            body = await request.json()
            prompt = body["messages"][-1]["content"]
            n = self.calls[prompt] = self.calls.get(prompt, 0) + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(latency_s)
            finally:
                self.in_flight -= 1
            if prompt.startswith("bad"):
                return JSONResponse({"error": {"message": "no such model"}}, status_code=404)
            if prompt.startswith("busy") and n == 1:
                return JSONResponse(
                    {"error": {"message": "slow down"}},
                    status_code=429,
                    headers={"Retry-After": "0"},
                )
            return JSONResponse(
                {
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": f"answer to {prompt}"},
                        }
                    ]
                }
            )

        self.app = app


def _golden(prompts: list[str]) -> GoldenSet:
    return GoldenSet(
        "scripted",
        1,
        tuple(GoldenItem(id=p, prompt=p, references=(f"answer to {p}",)) for p in prompts),
    )


def test_429_is_retried_and_other_4xx_are_not(settings: Settings, state: StateStore) -> None:
    fake = Scripted()
    golden = _golden(["busy one", "bad one", "fine one"])
    with ServerThread(fake.app) as srv:
        res = run_eval(
            settings, golden, opts(srv.url, model="m", retries=3, backoff=0.001), state=state
        )
    assert fake.calls == {"busy one": 2, "bad one": 1, "fine one": 1}
    gens = res.generations
    assert gens["busy one"].output == "answer to busy one" and gens["busy one"].attempts == 2
    assert gens["bad one"].output is None and gens["bad one"].attempts == 1
    assert gens["bad one"].error == (f"HTTP 404 from {srv.url}/v1/chat/completions: no such model")
    assert res.run["n_requests"] == 4 and res.run["status"] == "partial"


def test_concurrency_bounds_the_requests_in_flight(settings: Settings, state: StateStore) -> None:
    fake = Scripted(latency_s=0.03)
    golden = _golden([f"q{i}" for i in range(24)])
    with ServerThread(fake.app) as srv:
        run_eval(settings, golden, opts(srv.url, model="m", concurrency=3), state=state)
    assert fake.max_in_flight == 3
    assert sum(fake.calls.values()) == 24


def test_bad_options_and_names_are_input_errors(settings: Settings, state: StateStore) -> None:
    with pytest.raises(InputError, match="endpoint"):
        RunOptions.build(model="m", endpoint="ftp://x")
    with pytest.raises(InputError, match="concurrency"):
        RunOptions.build(model="m", concurrency=0)
    assert RunOptions.build(model="m", endpoint="http://h:1/v1/chat/completions/").endpoint == (
        "http://h:1/v1"
    )
    with pytest.raises(InputError, match="not be a number"):
        run_eval(settings, GOLDEN, RunOptions.build(model="m", name="42"), state=state)


def test_runs_from_code_that_already_has_an_event_loop(
    settings: Settings, state: StateStore, good: str
) -> None:
    golden = GoldenSet("tiny", 1, GOLDEN.items[:4])

    async def inside_a_loop() -> dict[str, Any]:
        return run_eval(settings, golden, opts(good, use_cache=False), state=state).run

    run = asyncio.run(inside_a_loop())
    assert run["n_answered"] == 4 and run["n_requests"] == 4
