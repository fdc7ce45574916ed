"""Prometheus metrics for ModelWarden's outputs, read from the state store at scrape time.

Drift status and p-value per scope and kind (the newest window in the drift history), each SOP
rule's value and state in the rollout under way, rollbacks and incidents, open incidents,
quarantined versions, notification failures and review queue depth. Labels stay low-cardinality:
kind, scope (a plant or "all plants"), rule, queue, severity. Every figure is one indexed query.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import and_, case, func, select

from modelwarden.drift.history import drift_results
from modelwarden.governance.incidents import incidents
from modelwarden.governance.notify import outbox_counts
from modelwarden.governance.registry import quarantined_versions
from modelwarden.review.queue import review_items, review_queues, reviews
from modelwarden.rollout import store as rollout_store
from modelwarden.store.state import StateStore

log = logging.getLogger("modelwarden.server")

SOP_STATES = ("OK", "PENDING", "FIRE", "NO_DATA")


class OutputsCollector(Collector):
    def __init__(self, state: StateStore) -> None:
        self.state = state

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            with self.state.engine.connect() as con:
                yield from self._drift(con)
                yield from self._sop(con)
                yield from self._governance(con)
                yield from self._review(con)
        except Exception:  # a scrape must never fail the whole endpoint
            log.exception("output metrics could not be read")

    def _drift(self, con: Any) -> Iterator[Metric]:
        d = drift_results
        latest = (
            select(d.c.kind, d.c.scope, func.max(d.c.window_end).label("we"))
            .group_by(d.c.kind, d.c.scope)
            .subquery()
        )
        q = (
            select(
                d.c.kind,
                d.c.scope,
                func.max(case((d.c.status == "ALERT", 1), else_=0)).label("alert"),
                func.min(d.c.p_value).label("p"),
            )
            .join(
                latest,
                and_(
                    d.c.kind == latest.c.kind,
                    d.c.scope == latest.c.scope,
                    d.c.window_end == latest.c.we,
                ),
            )
            .group_by(d.c.kind, d.c.scope)
        )
        status = GaugeMetricFamily(
            "modelwarden_drift_alert",
            "1 if the newest drift window of this kind and scope raised an alert, else 0.",
            labels=["kind", "scope"],
        )
        pval = GaugeMetricFamily(
            "modelwarden_drift_p_value",
            "Smallest p-value among the tests of the newest drift window.",
            labels=["kind", "scope"],
        )
        for r in con.execute(q):
            status.add_metric([r.kind, r.scope], float(r.alert or 0))
            if r.p is not None:
                pval.add_metric([r.kind, r.scope], float(r.p))
        yield status
        yield pval

    def _sop(self, con: Any) -> Iterator[Metric]:
        active = rollout_store.active_in(con)
        live = GaugeMetricFamily(
            "modelwarden_rollout_active", "1 while a canary rollout is under way."
        )
        live.add_metric([], 1.0 if active is not None else 0.0)
        yield live
        step = GaugeMetricFamily(
            "modelwarden_rollout_step", "The rollout's step (1-based); 0 with none under way."
        )
        step.add_metric([], float(active.step + 1) if active is not None else 0.0)
        yield step
        value = GaugeMetricFamily(
            "modelwarden_sop_rule_value",
            "Each SOP rule's value at the controller's last tick (the canary's metric).",
            labels=["rule", "scope"],
        )
        threshold = GaugeMetricFamily(
            "modelwarden_sop_rule_threshold", "Each SOP rule's threshold.", labels=["rule"]
        )
        st = GaugeMetricFamily(
            "modelwarden_sop_rule_state",
            "1 for each SOP rule's state at the last tick (OK, PENDING, FIRE, NO_DATA).",
            labels=["rule", "scope", "state"],
        )
        seen: set[str] = set()
        for res in ((active.engine_state if active else None) or {}).get("rules", []):
            rule, scope = str(res["rule_id"]), str(res.get("scope") or "overall")
            if res.get("value") is not None:
                value.add_metric([rule, scope], float(res["value"]))
            if rule not in seen:
                threshold.add_metric([rule], float(res.get("threshold") or 0.0))
                seen.add(rule)
            state = str(res.get("status", "NO_DATA")).upper()
            for s in SOP_STATES:
                st.add_metric([rule, scope, s], 1.0 if state == s else 0.0)
        yield value
        yield threshold
        yield st

    def _governance(self, con: Any) -> Iterator[Metric]:
        r = rollout_store.rollouts
        rolled = con.execute(
            select(func.count()).select_from(r).where(r.c.status == "rolled_back")
        ).scalar_one()
        rb = CounterMetricFamily("modelwarden_rollbacks", "Rollouts ended by a rollback.")
        rb.add_metric([], float(rolled))
        yield rb
        inc_total = CounterMetricFamily(
            "modelwarden_incidents", "Incidents opened, by severity.", labels=["severity"]
        )
        inc_open = GaugeMetricFamily(
            "modelwarden_incidents_open",
            "Incidents not closed yet, by severity.",
            labels=["severity"],
        )
        q = select(
            incidents.c.severity,
            func.count(),
            func.sum(case((incidents.c.status != "closed", 1), else_=0)),
        ).group_by(incidents.c.severity)
        totals = {row[0]: (row[1], row[2] or 0) for row in con.execute(q)}
        for severity in sorted({"rollback", "alert", *totals}):
            n, n_open = totals.get(severity, (0, 0))
            inc_total.add_metric([severity], float(n))
            inc_open.add_metric([severity], float(n_open))
        yield inc_total
        yield inc_open
        n_q = GaugeMetricFamily(
            "modelwarden_quarantined_versions", "Model versions in quarantine (never served)."
        )
        n_q.add_metric([], float(len(quarantined_versions(self.state))))
        yield n_q
        counts = outbox_counts(self.state)
        nf = CounterMetricFamily(
            "modelwarden_notification_failures",
            "Incident notifications that failed after every retry.",
        )
        nf.add_metric([], float(counts["failed"]))
        yield nf
        nfa = CounterMetricFamily(
            "modelwarden_notification_attempt_failures",
            "Notification delivery attempts that failed (a channel that is down); each is "
            "retried from the outbox until its retry_attempts are used up.",
        )
        nfa.add_metric([], float(counts["failed_attempts"]))
        yield nfa
        nretry = GaugeMetricFamily(
            "modelwarden_notifications_retrying",
            "Notifications waiting for another try after a failed attempt.",
        )
        nretry.add_metric([], float(counts["retrying"]))
        yield nretry
        npend = GaugeMetricFamily(
            "modelwarden_notifications_pending", "Incident notifications not delivered yet."
        )
        npend.add_metric([], float(counts["pending"]))
        yield npend

    def _review(self, con: Any) -> Iterator[Metric]:
        given = (
            select(reviews.c.item_id, func.count().label("n"))
            .group_by(reviews.c.item_id)
            .subquery()
        )
        q = (
            select(
                review_items.c.queue,
                func.sum(
                    case(
                        (
                            func.coalesce(given.c.n, 0) < review_queues.c.reviewers_per_item,
                            review_queues.c.reviewers_per_item - func.coalesce(given.c.n, 0),
                        ),
                        else_=0,
                    )
                ),
            )
            .join(review_queues, review_queues.c.name == review_items.c.queue)
            .outerjoin(given, given.c.item_id == review_items.c.id)
            .group_by(review_items.c.queue)
        )
        depth = GaugeMetricFamily(
            "modelwarden_review_queue_depth",
            "Reviews still needed in each review queue.",
            labels=["queue"],
        )
        for queue, n in con.execute(q):
            depth.add_metric([queue], float(n or 0))
        yield depth


__all__ = ["OutputsCollector"]
