"""The review HTTP endpoints on a real server: claim, review, status, agreement and their guards."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwarden.governance import audit
from modelwarden.governance.keys import create_key, lookup_secret
from modelwarden.review import service
from modelwarden.review.queue import list_reviews
from modelwarden.review.reliability import agreement_report
from modelwarden.review.sampling import SampleSpec, build_queue
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

GOOD_ANSWERS = {"correctness": 5, "safety": True, "helpfulness": 4, "issue": "none"}


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
    # A queue the operator's key created: it owns it.
    ops = lookup_secret(state, keys["ops"])
    assert ops is not None
    service.sample(
        settings,
        state,
        SampleSpec.build(source="logs", n=2, strategy="random", reviewers=1, queue="mine", seed=2),
        owner=ops,
    )
    # The admin key comes last: once it exists, keys above ingest need it to be created.
    keys["admin"] = create_key(state, "admin", name="root")[0]
    app = create_app(settings, ServerConfig(flush_interval_s=0.1))
    with ServerThread(app) as srv:
        yield {"url": srv.url, "keys": keys, "state": state, "settings": settings}
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
    with client(server, "admin") as http:
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
        assert [q["name"] for q in queues] == ["q", "other", "mine"]
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


def test_progress_and_agreement_are_for_the_queue_owner_and_admins(server: dict[str, Any]) -> None:
    state = server["state"]
    with client(server, "ops") as http:
        item = http.get("/v1/review/queues/mine/next", params={"reviewer": "cy"}).json()
        body = {"item_id": item["item_id"], "reviewer": "cy", "answers": GOOD_ANSWERS}
        assert http.post("/v1/review/queues/mine/reviews", json=body).status_code == 201
    owner_id = next(q for q in service.queues(state) if q["name"] == "mine")["owner_key_id"]
    assert owner_id == lookup_secret(state, server["keys"]["ops"]).id  # type: ignore[union-attr]
    for who in ("ops", "admin"):  # the owner, and an admin key
        with client(server, who) as http:
            status = http.get("/v1/review/queues/mine/status")
            assert status.status_code == 200, status.text
            assert status.json()["reviews"] == 1 and status.json()["reviewers"] == {"cy": 1}
            agreement = http.get("/v1/review/queues/mine/agreement")
            assert agreement.status_code == 200, agreement.text
            assert agreement.json()["queue"] == "mine"
    # Another reviewer may review the queue but not see how it goes; each refusal is audited.
    with client(server, "bob") as http:
        assert (
            http.get("/v1/review/queues/mine/next", params={"reviewer": "bob"}).status_code == 200
        )
        for what in ("status", "agreement"):
            before = len(audit.entries(state, action="http.refused"))
            res = http.get(f"/v1/review/queues/mine/{what}")
            assert res.status_code == 403, res.text
            err = res.json()["error"]
            assert err["code"] == "forbidden" and err["field"] == "queue"
            assert "shown to its owner (key " in err["message"] and "admin keys" in err["message"]
            refused = audit.entries(state, action="http.refused")
            assert len(refused) == before + 1
            assert refused[-1].subject == f"/v1/review/queues/mine/{what}"
            assert refused[-1].actor.endswith("(bob)") and refused[-1].reason == err["message"]
    # A queue made without a key has no owner: admin keys only, even for an operator.
    with client(server, "ops") as http:
        res = http.get("/v1/review/queues/q/agreement")
        assert res.status_code == 403 and "has no owner" in res.json()["error"]["message"]
    with client(server, "admin") as http:
        assert http.get("/v1/review/queues/q/agreement").status_code == 200
    with client(server, None) as http:
        assert http.get("/v1/review/queues/mine/status").status_code == 401


def test_every_review_route_has_its_own_operation_id(server: dict[str, Any]) -> None:
    # The review routes are in the app once, so the document builds without a duplicate warning.
    app = create_app(server["settings"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = app.openapi()["paths"]
    ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    review = {
        p: {m: op["operationId"] for m, op in ops.items()}
        for p, ops in paths.items()
        if p.startswith("/v1/review")
    }
    assert review["/v1/review/queues/{queue}/agreement"] == {"get": "review_queue_agreement"}
    assert review["/v1/review/queues/{queue}/status"] == {"get": "review_queue_status"}
