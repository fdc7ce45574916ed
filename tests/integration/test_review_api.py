"""The review HTTP endpoints on a real server: claim, review, status, agreement and their guards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from modelwarden.governance.keys import create_key
from modelwarden.review.queue import list_reviews
from modelwarden.review.reliability import agreement_report
from modelwarden.review.sampling import SampleSpec, build_queue
from modelwarden.server import review_api
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

GOOD_ANSWERS = {"correctness": 5, "safety": True, "helpfulness": 4, "issue": "none"}


def _with_review_routes(app: FastAPI) -> FastAPI:
    if not any(getattr(r, "path", "").startswith("/v1/review") for r in app.routes):
        app.include_router(review_api.router)
    return app


@pytest.fixture
def server(tmp_path: Path, sim_data: Any) -> Iterator[dict[str, Any]]:
    from modelwarden.ingest.core import Ingestor
    from modelwarden.safety.service import safety_checker
    from modelwarden.store.reads import open_store

    data = tmp_path / "warden-data"
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    ing = Ingestor(open_store(settings), safety_checker(settings))
    rows = sim_data.requests[:300]
    ing.ingest_raw("requests", [(str(i), r) for i, r in enumerate(rows)], "test")
    state = StateStore.at(data)
    build_queue(
        settings,
        state,
        SampleSpec.build(source="logs", n=3, strategy="random", reviewers=2, queue="q", seed=0),
    )
    build_queue(
        settings,
        state,
        SampleSpec.build(source="logs", n=1, strategy="random", reviewers=1, queue="other", seed=1),
    )
    keys = {
        "ann": create_key(state, "reviewer", name="ann")[0],
        "bob": create_key(state, "reviewer", name="bob")[0],
        "ops": create_key(state, "operator", name="ops")[0],
        "ingest": create_key(state, "ingest")[0],
        "nameless": create_key(state, "reviewer")[0],
    }
    app = _with_review_routes(create_app(settings, ServerConfig(flush_interval_s=0.1)))
    with ServerThread(app) as srv:
        yield {"url": srv.url, "keys": keys, "state": state}
    state.close()


def client(server: dict[str, Any], who: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server['keys'][who]}"} if who else {}
    return httpx.Client(base_url=server["url"], headers=headers, timeout=10)


def test_review_round_trip_over_http(server: dict[str, Any]) -> None:
    seen: dict[str, list[str]] = {}
    for who in ("ann", "bob", "ops"):
        with client(server, who) as http:
            reviewer = "cy" if who == "ops" else who
            seen[reviewer] = []
            while True:
                res = http.get("/v1/review/queues/q/next", params={"reviewer": reviewer})
                if res.status_code == 204:
                    break
                assert res.status_code == 200, res.text
                item = res.json()
                assert item["queue"] == "q" and item["kind"] == "single"
                assert "model_version" not in item and item["rubric"]["name"] == "plant-answer"
                seen[reviewer].append(item["item_id"])
                body = {"item_id": item["item_id"], "reviewer": reviewer, "answers": GOOD_ANSWERS}
                posted = http.post("/v1/review/queues/q/reviews", json=body)
                assert posted.status_code == 201, posted.text
                assert posted.json()["created"] is True
                again = http.post("/v1/review/queues/q/reviews", json=body)
                assert again.status_code == 200 and again.json()["id"] == posted.json()["id"]
    # Two reviewers per item: ann and bob take all three, cy gets none.
    assert sorted(seen["ann"]) == sorted(seen["bob"]) and len(seen["ann"]) == 3
    assert seen["cy"] == []
    with client(server, None) as http:
        status = http.get("/v1/review/queues/q/status").json()
        assert status["complete_items"] == 3 and status["reviews"] == 6
        assert status["reviewers"] == {"ann": 3, "bob": 3}
        agreement = http.get("/v1/review/queues/q/agreement").json()
        assert agreement["reviewers"] == ["ann", "bob"]
        direct = agreement_report(server["state"], "q")
        assert {d["name"]: d["alpha"] for d in agreement["dimensions"]} == {
            d["name"]: d["alpha"] for d in direct["dimensions"]
        }
        queues = http.get("/v1/review/queues").json()
        assert [q["name"] for q in queues] == ["q", "other"]
        paths = http.get("/openapi.json").json()["paths"]
        assert "/v1/review/queues/{queue}/next" in paths
        assert "/v1/review/queues/{queue}/reviews" in paths
    assert len(list_reviews(server["state"], "q")) == 6


def test_review_endpoints_guard_identity_and_input(server: dict[str, Any]) -> None:
    with client(server, None) as http:
        res = http.get("/v1/review/queues/q/next", params={"reviewer": "ann"})
        assert res.status_code == 401 and res.json()["error"]["code"] == "unauthorized"
    with client(server, "ingest") as http:
        res = http.get("/v1/review/queues/q/next", params={"reviewer": "ann"})
        assert res.status_code == 403  # an ingest key cannot review, as anyone
        assert "role 'ingest' may not" in res.json()["error"]["message"]
        res = http.post(
            "/v1/review/queues/q/reviews",
            json={"item_id": "x", "reviewer": "ann", "answers": GOOD_ANSWERS},
        )
        assert res.status_code == 403
    with client(server, "nameless") as http:
        res = http.get("/v1/review/queues/q/next", params={"reviewer": "ann"})
        assert res.status_code == 403 and "has no name" in res.json()["error"]["message"]
    with client(server, "ann") as http:
        res = http.get("/v1/review/queues/q/next", params={"reviewer": "bob"})
        assert res.status_code == 403 and "cannot act as 'bob'" in res.json()["error"]["message"]
        res = http.post(
            "/v1/review/queues/q/reviews",
            json={"item_id": "x", "reviewer": "bob", "answers": GOOD_ANSWERS},
        )
        assert res.status_code == 403 and res.json()["error"]["field"] == "reviewer"
        item = http.get("/v1/review/queues/q/next", params={"reviewer": "ann"}).json()
        bad = http.post(
            "/v1/review/queues/q/reviews",
            json={
                "item_id": item["item_id"],
                "reviewer": "ann",
                "answers": {**GOOD_ANSWERS, "correctness": 9},
            },
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["field"] == "correctness"
        shape = http.post("/v1/review/queues/q/reviews", json={"item_id": item["item_id"]})
        assert shape.status_code == 422
        wrong_queue = http.post(
            "/v1/review/queues/other/reviews",
            json={"item_id": item["item_id"], "reviewer": "ann", "answers": GOOD_ANSWERS},
        )
        assert wrong_queue.status_code == 404
        ok = http.post(
            "/v1/review/queues/q/reviews",
            json={"item_id": item["item_id"], "reviewer": "ann", "answers": GOOD_ANSWERS},
        )
        assert ok.status_code == 201
        changed = http.post(
            "/v1/review/queues/q/reviews",
            json={
                "item_id": item["item_id"],
                "reviewer": "ann",
                "answers": {**GOOD_ANSWERS, "correctness": 1},
            },
        )
        assert changed.status_code == 409 and changed.json()["error"]["code"] == "conflict"
        missing = http.get("/v1/review/queues/nope/status")
        assert missing.status_code == 404 and missing.json()["error"]["field"] == "queue"
