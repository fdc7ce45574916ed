"""Writes ``state_0_1_0.sql``: a state database as release 0.1.0 (commit d29525f) creates it.

Run with that release's code first on the path; the rows go in through its own functions and
table objects, so the stored formats (datetimes, JSON) are exactly what that release wrote::

    git worktree add /tmp/prev d29525f
    PYTHONPATH=/tmp/prev/src python tests/data/make_state_0_1_0.py tests/data/state_0_1_0.sql
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from modelwarden.incidents import incident_steps, incidents
from modelwarden.notify import notifications
from sqlalchemy import insert

from modelwarden import audit, auth, registry
from modelwarden.evals.store import eval_runs
from modelwarden.review.queue import review_items, review_queues
from modelwarden.rollout.store import rollouts
from modelwarden.store.state import StateStore

T0 = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)


def main(out: Path) -> None:
    data = Path(tempfile.mkdtemp())
    state = StateStore.at(data)
    auth.create_key(state, "admin", name="ops")
    auth.create_key(state, "ingest", name="plant-a", plant="plant-a")
    registry.add(state, "v1", "http://127.0.0.1:9101", "cli:test", status="stable")
    registry.add(state, "v2", "http://127.0.0.1:9102", "cli:test")
    audit.record(state, "cli:test", "note", "v2", "seeded", {"n": 1}, at=T0)
    with state.engine.begin() as con:
        con.execute(
            insert(eval_runs).values(
                name="v1-golden",
                model="v1",
                endpoint="http://127.0.0.1:9101/v1",
                golden_name="golden",
                golden_version=1,
                golden_hash="ab" * 32,
                status="done",
                params={"temperature": 0.0},
                signatures={"bleu": "nrefs:1"},
                corpus={"bleu": 41.5},
                embedder="hashing",
                n_items=3,
                n_answered=3,
                n_failed=0,
                n_cached=0,
                n_requests=3,
                duration_s=1.25,
                created_at=T0,
            )
        )
        con.execute(
            insert(review_queues).values(
                name="default",
                rubric={"name": "default"},
                reviewers_per_item=2,
                lease_minutes=60.0,
                params={},
                created_at=T0,
            )
        )
        con.execute(
            insert(review_items).values(
                id="it1",
                queue="default",
                kind="single",
                position=0,
                source="logs",
                source_ref="req-1",
                request_id="req-1",
                model_version="v1",
                plant_id="plant-a",
                prompt="How do I reset the press?",
                response="Press the red button.",
                meta={"route": "stable"},
                created_at=T0,
            )
        )
        con.execute(
            insert(rollouts).values(
                version="v2",
                canary_url="http://127.0.0.1:9102",
                stable_version="v1",
                stable_url="http://127.0.0.1:9101",
                plan={"steps": [5, 25, 100]},
                status="rolled_back",
                step=1,
                step_started_at=T0,
                hold_until=T0,
                looks=3,
                route_version=2,
                engine_state={},
                incident_id="INC-20250303-093000-abcd",
                created_at=T0,
                created_by="cli:test",
                updated_at=T0,
                ended_at=T0,
                end_reason="rule fired",
            )
        )
        con.execute(
            insert(incidents).values(
                id="INC-20250303-093000-abcd",
                key="rollout:1",
                status="closed",
                severity="high",
                version="v2",
                stable_version="v1",
                rollout_id=1,
                rule_id="safety_rate",
                trigger={"value": 0.02},
                detected_at=T0,
                created_at=T0,
                updated_at=T0,
                actor="sop",
                rca_dir=None,
                note="seeded",
            )
        )
        con.execute(
            insert(incident_steps).values(
                incident_id="INC-20250303-093000-abcd",
                step="reroute",
                done_at=T0,
                detail={"route_version": 3},
            )
        )
        con.execute(
            insert(notifications).values(
                incident_id="INC-20250303-093000-abcd",
                channel="webhook",
                target="http://127.0.0.1:9/hook",
                payload={"event": "modelwarden.rollback"},
                status="sent",
                attempts=1,
                max_attempts=5,
                backoff_ms=500,
                timeout_ms=5000,
                next_attempt_at=T0,
                created_at=T0,
                sent_at=T0,
            )
        )
    state.close()
    con = sqlite3.connect(data / "state.db")
    out.write_text("\n".join(con.iterdump()) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
