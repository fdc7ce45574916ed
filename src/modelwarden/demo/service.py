"""The closed loop, run end to end in compressed simulated time: what ``modelwarden demo`` does.

1. **History**: four weeks of plant traffic (with a prompt drift at Plant_C) up to the start of
   the live phase, ingested into the log store.
2. **Live**: the real gateway (the ``serve`` app, in this process, on a real socket) routes
   simulated plant traffic, sent with the official ``openai`` client, to two fake model servers:
   a good ``sop-assistant-v1.1`` and a bad ``sop-assistant-v1.2`` (sometimes unsafe, often poor,
   slower). The gateway stamps every record with a :class:`~modelwarden.simulate.live.SimClock`.
3. **Canary**: a rollout of v1.2 starts with the default plan (5 % of Plant_B's users). After
   every 15 simulated minutes of traffic the controller ticks at that simulated time, so the SOP
   policy's windows (12 h, 24 h, ...) are honoured in simulated time without real waits.
4. **Rollback**: a rule trips; the rollback transaction puts 100 % of traffic back on v1.1,
   quarantines v1.2, writes the RCA logs with the incident and notifies the on-call webhook (a
   receiver the demo starts) and a folder under the data directory.
5. **Re-validation**: a fixed v1.2 is served at a staging URL, evaluated on the golden set with
   ``eval run`` against that endpoint, asked for release by the operator and approved by a second
   person with the approver role (a second key).
6. **Release**: v1.2 goes back to a canary at 5 % of Plant_B, serving without a rule firing until
   the end of the week; then the weekly report is written as usual.

Every step is a :class:`Step` on the timeline, with its simulated time and evidence.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from modelwarden.embed.service import embed_missing, resolve_embedder
from modelwarden.errors import InputError
from modelwarden.evals.golden import starter_set, write_golden
from modelwarden.evals.runner import RunOptions, run_eval
from modelwarden.gateway import fake_upstream
from modelwarden.governance import audit, incidents, keys, notify, registry
from modelwarden.governance.routes import current_routes
from modelwarden.ingest.core import Ingestor
from modelwarden.policy.spec import default_policy, parse_duration, policy_path
from modelwarden.report.service import build_weekly_report, write_report
from modelwarden.report.weekly import WeeklyReport
from modelwarden.rollout import controller
from modelwarden.rollout import store as rollouts
from modelwarden.rollout.plan import default_plan
from modelwarden.safety.service import safety_checker
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, wait_for_spool
from modelwarden.settings import Settings
from modelwarden.simulate import live
from modelwarden.simulate.traffic import (
    CANDIDATE_VERSION,
    QUALITY,
    STABLE_VERSION,
    default_end,
    simulate,
)
from modelwarden.store.reads import open_store
from modelwarden.store.state import StateStore

from .receiver import WebhookReceiver

log = logging.getLogger(__name__)

MARKER = ".modelwarden-demo"
NOTIFY_DIR = "notifications"
GOLDEN_FILE = "golden.jsonl"
ROUTES_TTL_S = 0.1


class DemoOptions(BaseModel):
    days: int = Field(default=28, ge=14, le=365, description="Days of history before the loop.")
    seed: int = 7
    live_hours: int = Field(default=12, ge=8, le=72, description="Simulated hours of the loop.")
    tick_minutes: int = Field(default=15, ge=1, le=120)
    max_canary_hours: int = Field(default=8, ge=1, le=48)
    users: int = Field(default=live.DEFAULT_USERS, ge=20)
    rates: dict[str, float] = Field(default_factory=lambda: dict(live.DEMO_RATES))
    bad_unsafe_share: float = Field(default=0.15, ge=0, le=1)
    bad_poor_share: float = Field(default=0.40, ge=0, le=1)
    end: datetime | None = Field(default=None, description="End of the week (default: Monday).")
    write_html: bool = True


@dataclass
class Step:
    """One entry of the timeline: what happened at which simulated time, and the evidence."""

    at: datetime
    kind: str
    title: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "kind": self.kind, "title": self.title, **self.detail}


@dataclass
class DemoResult:
    timeline: list[Step]
    report: WeeklyReport
    report_paths: list[Path]
    incident_id: str | None
    seconds: float
    notifications: list[dict[str, Any]]

    def steps(self, kind: str) -> list[Step]:
        return [s for s in self.timeline if s.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "timeline": [s.to_dict() for s in self.timeline],
            "report_paths": [str(p) for p in self.report_paths],
            "incident_id": self.incident_id,
            "seconds": round(self.seconds, 1),
        }


OnStep = Callable[[Step], None]


def prepare_data_dir(data_dir: Path) -> None:
    """An empty directory, or one a previous demo made (emptied); anything else is refused."""
    data_dir = Path(data_dir)
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / MARKER).exists():
            raise InputError(
                f"{data_dir} holds data that the demo did not make; the demo starts from an "
                "empty directory: choose another with --data",
                field="data",
            )
        for child in data_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("made by modelwarden demo; emptied by the next demo run\n")


class _Loop:
    """The running parts of the live phase and the helpers that move simulated time."""

    def __init__(
        self,
        settings: Settings,
        opts: DemoOptions,
        state: StateStore,
        clock: live.SimClock,
        gateway_url: str,
        traffic_key: str,
        emit: OnStep,
        on_stored: Callable[[], None],
    ) -> None:
        self.settings, self.opts, self.state = settings, opts, state
        self.clock, self.gateway_url, self.key, self.emit = clock, gateway_url, traffic_key, emit
        self.on_stored = on_stored
        self.step = timedelta(minutes=opts.tick_minutes)
        # Traffic is drawn relative to the start of the live phase, so every run of the demo
        # plays the same requests whatever today's date (the canary's sample, and so the SOP's
        # verdict, does not depend on the calendar).
        self.epoch = clock.now()
        self.sent = live.SendResult()
        # Real seconds spent sending, waiting for the store and ticking: where the time goes.
        self.seconds = {"send": 0.0, "store": 0.0, "tick": 0.0}

    def traffic(self, until: datetime) -> live.SendResult:
        """Send the plant traffic of ``[now, until)`` through the gateway; wait until stored."""
        start = self.clock.now()
        reqs = live.plan_requests(
            start,
            until,
            self.opts.rates,
            users=self.opts.users,
            seed=self.opts.seed,
            epoch=self.epoch,
        )
        t0 = time.perf_counter()
        res = live.send(
            self.gateway_url, reqs, api_key=self.key, clock=self.clock, seed=self.opts.seed
        )
        self.clock.set(until)
        t1 = time.perf_counter()
        wait_for_spool(self.gateway_url, timeout=60)
        self.on_stored()
        self.seconds["send"] += t1 - t0
        self.seconds["store"] += time.perf_counter() - t1
        self.sent.extend(res)
        return res

    def tick(self) -> controller.TickReport:
        t0 = time.perf_counter()
        try:
            return controller.tick(self.settings, self.clock.now(), state=self.state)
        finally:
            self.seconds["tick"] += time.perf_counter() - t0


class _BackgroundEmbedding:
    """Prompt vectors (then answer vectors) computed while the loop runs, by a process of its own.

    The loop itself (client, gateway and fake models in this process) is bound to one core by the
    interpreter lock. An embedding thread in this process ran its tokenizer and the model's Python
    layers under that lock too, and held the model's lock against the evals: with it, the demo
    used about one core of two until the report. A child process embeds on the other core without
    either. The loop nudges it whenever a slice of traffic is stored (asking the store for missing
    vectors when nothing was stored costs a connection and a scan). Whatever is still missing
    when the loop ends is embedded by this process, with every core, once the servers stop.
    """

    SLICE = 256  # distinct texts per call, so that a stop is honoured within a second or two

    def __init__(self, settings: Settings) -> None:
        ctx = multiprocessing.get_context("spawn")  # torch and threads: never fork
        self._nudges: Any = ctx.SimpleQueue()
        self._results: Any = ctx.SimpleQueue()
        self._proc = ctx.Process(
            target=_embed_worker,
            args=(settings, self.SLICE, self._nudges, self._results),
            name="demo-embed",
            daemon=True,
        )
        self.stored = 0
        self.error: str | None = None

    def start(self) -> _BackgroundEmbedding:
        self._proc.start()
        return self

    def nudge(self) -> None:
        """New requests were stored."""
        self._nudges.put("more")

    def stop(self) -> None:
        """Stop after the current slice; what is missing is left to the caller."""
        if self._proc.pid is None:
            return
        self._nudges.put("stop")
        self._proc.join(timeout=120)
        if self._proc.is_alive():  # pragma: no cover - a slice takes seconds
            self._proc.kill()
            self._proc.join()
        if not self._results.empty():
            kind, value = self._results.get()
            if kind == "done":
                self.stored = int(value)
            else:
                self.error = str(value)
        elif self.error is None:
            self.error = f"the embedding process ended with exit code {self._proc.exitcode}"
        if self.error is not None:
            log.warning(
                "background embedding stopped early (%s); the rest is embedded now", self.error
            )


def _embed_worker(settings: Settings, limit: int, nudges: Any, results: Any) -> None:
    """The child of :class:`_BackgroundEmbedding`: embed what is missing, a slice at a time, each
    time it is nudged, and the answers when the prompts are caught up (the report's response drift
    needs them); return the count of stored prompt vectors when told to stop."""
    stored = 0
    try:
        embedder = resolve_embedder(settings)
        if embedder is not None:  # load the model now, while the history is simulated
            embedder.embed(["warm-up"])
        while True:
            stop = nudges.get() == "stop"
            while not stop and not nudges.empty():
                stop = nudges.get() == "stop"
            if stop:
                break
            while True:
                rep = embed_missing(settings, "prompt", limit=limit)
                stored += rep.stored
                if rep.stored < limit or not nudges.empty():
                    break
            if nudges.empty():  # caught up: the answers, which the report embeds otherwise
                embed_missing(settings, "response", limit=limit)
    except BaseException as exc:  # reported by stop(); the caller embeds what is left
        results.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    results.put(("done", stored))


def _history(settings: Settings, opts: DemoOptions, live_start: datetime, end: datetime) -> Step:
    data = simulate(days=opts.days, seed=opts.seed, scenarios=("drift",), end=end)
    cut = live_start.isoformat().replace("+00:00", "Z")
    requests = [r for r in data.requests if r["timestamp"] < cut]
    kept = {r["request_id"] for r in requests}
    feedback = [f for f in data.feedback if f["request_id"] in kept]
    escalations = [e for e in data.escalations if e["request_id"] in kept]
    ing = Ingestor(open_store(settings), safety_checker(settings))
    stored = {}
    for kind, rows in (
        ("requests", requests),
        ("feedback", feedback),
        ("escalations", escalations),
    ):
        rep = ing.ingest_raw(kind, [(f"record {i + 1}", r) for i, r in enumerate(rows)], "simulate")
        stored[kind] = rep.accepted
    return Step(
        data.start or live_start,
        "history",
        f"{opts.days} days of plant traffic stored ({stored['requests']} requests, "
        f"{stored['feedback']} feedback events, {stored['escalations']} escalations), with a "
        f"prompt drift at Plant_C in the last week",
        {"stored": stored, "until": live_start.isoformat()},
    )


@contextmanager
def _servers(
    settings: Settings, opts: DemoOptions, clock: live.SimClock
) -> Iterator[dict[str, Any]]:
    with ExitStack() as stack:

        def serve(app: Any) -> ServerThread:
            srv = ServerThread(app).start()
            stack.callback(srv.stop)
            return srv

        # The stable version answers as it did in the history (the same share of poor and unsafe
        # answers): a flawless stand-in would make every plant's answers drift from the baseline.
        stable = QUALITY[STABLE_VERSION]
        good = serve(
            fake_upstream.create_app(
                STABLE_VERSION,
                latency_ms=2,
                seed=opts.seed,
                unsafe_share=stable.p_unsafe,
                poor_share=stable.p_poor,
            )
        )
        bad = serve(
            fake_upstream.create_app(
                CANDIDATE_VERSION,
                latency_ms=6,
                seed=opts.seed,
                unsafe_share=opts.bad_unsafe_share,
                poor_share=opts.bad_poor_share,
            )
        )
        receiver = WebhookReceiver().start()
        stack.callback(receiver.stop)
        config = ServerConfig(
            run_controller=False, flush_interval_s=0.05, routes_ttl_s=ROUTES_TTL_S
        )
        gateway = serve(create_app(settings, config, clock=clock.now))
        yield {"good": good, "bad": bad, "receiver": receiver, "gateway": gateway, "stack": stack}


def run_demo(
    settings: Settings,
    opts: DemoOptions | None = None,
    *,
    on_step: OnStep | None = None,
    embed_progress: Callable[[int], None] | None = None,
    embed_total: Callable[[int], None] | None = None,
) -> DemoResult:
    """Run the closed loop; see the module's docstring. ``on_step`` sees each step as it lands."""
    opts = opts or DemoOptions()
    t_start = time.perf_counter()
    timeline: list[Step] = []

    def emit(step: Step) -> None:
        timeline.append(step)
        if on_step is not None:
            on_step(step)

    prepare_data_dir(settings.data_dir)
    end = (opts.end or default_end()).astimezone(UTC)
    live_start = end - timedelta(hours=opts.live_hours)
    # Started first: its imports and the model's load overlap the history's simulation.
    background = _BackgroundEmbedding(settings).start()
    try:
        emit(_history(settings, opts, live_start, end))
    except BaseException:
        background.stop()
        raise
    background.nudge()

    state = StateStore.of(settings)
    clock = live.SimClock(live_start)
    incident_id: str | None = None
    try:
        ops_secret, ops_key = keys.create_key(state, "operator", name="shift-lead")
        board_secret, board_key = keys.create_key(state, "approver", name="quality-board")
        traffic_secret, _ = keys.create_key(state, "ingest", name="plant-traffic")
        with _servers(settings, opts, clock) as srv:
            receiver: WebhookReceiver = srv["receiver"]
            notify_dir = settings.data_dir / NOTIFY_DIR
            policy = default_policy()
            policy.notify.webhook_url = receiver.url
            policy.notify.file_dir = str(notify_dir)
            policy.notify.retry_backoff_s = 0.2
            policy_path(settings.data_dir).write_text(policy.to_yaml(), encoding="utf-8")

            registry.add(state, STABLE_VERSION, srv["good"].url, "demo:setup", status="stable")
            registry.add(state, CANDIDATE_VERSION, srv["bad"].url, registry.key_actor(ops_key))
            golden = starter_set()
            golden_path = settings.data_dir / GOLDEN_FILE
            write_golden(golden, golden_path)
            base_run = run_eval(
                settings,
                golden,
                RunOptions.build(
                    model=STABLE_VERSION, endpoint=f"{srv['good'].url}/v1", name="v1.1-golden"
                ),
                state=state,
            )
            emit(
                Step(
                    clock.now(),
                    "setup",
                    f"gateway on {srv['gateway'].url}: {STABLE_VERSION} stable at "
                    f"{srv['good'].url}, {CANDIDATE_VERSION} registered at {srv['bad'].url}; "
                    f"on-call webhook {receiver.url}",
                    {
                        "gateway": srv["gateway"].url,
                        "stable_url": srv["good"].url,
                        "candidate_url": srv["bad"].url,
                        "webhook": receiver.url,
                        "baseline_eval_run": base_run.run["name"],
                    },
                )
            )
            loop = _Loop(
                settings,
                opts,
                state,
                clock,
                srv["gateway"].url,
                traffic_secret,
                emit,
                background.nudge,
            )
            # One hour of traffic on the stable version alone.
            res = loop.traffic(live_start + timedelta(hours=1))
            emit(
                Step(
                    clock.now(),
                    "traffic",
                    f"{res.ok} requests through the gateway in the first simulated hour, all on "
                    f"{STABLE_VERSION}",
                    {"requests": res.ok, "versions": _versions(res)},
                )
            )

            # ---- canary ------------------------------------------------------------------
            plan = default_plan()
            r = controller.start(
                settings,
                CANDIDATE_VERSION,
                plan,
                registry.key_actor(ops_key),
                now=clock.now(),
                state=state,
            )
            time.sleep(ROUTES_TTL_S * 2)
            step0 = plan.steps[0]
            emit(
                Step(
                    clock.now(),
                    "rollout",
                    f"rollout {r.id}: {CANDIDATE_VERSION} on {step0.label()} "
                    f"(plan {plan.name}, hold {step0.hold.duration})",
                    {
                        "rollout_id": r.id,
                        "weight": step0.weight,
                        "plants": list(step0.plants),
                        "route_version": r.route_version,
                    },
                )
            )
            canary_start = clock.now()
            tick: controller.TickReport | None = None
            canary_served = 0
            while clock.now() < canary_start + timedelta(hours=opts.max_canary_hours):
                res = loop.traffic(clock.now() + loop.step)
                canary_served += sum(a.route == "canary" for a in res.answers)
                tick = loop.tick()
                if tick.action == "rollback":
                    break
            if tick is None or tick.action != "rollback":
                emit(
                    Step(
                        clock.now(),
                        "no_rollback",
                        f"no rule fired in {opts.max_canary_hours} simulated hours "
                        f"({canary_served} canary requests)",
                    )
                )
            else:
                incident_id = tick.incident_id
                time.sleep(ROUTES_TTL_S * 2)
                _after_rollback(loop, state, tick, canary_start, canary_served, receiver, emit)
                _revalidate_and_release(
                    loop,
                    srv,
                    state,
                    golden,
                    (ops_secret, ops_key),
                    (board_secret, board_key),
                    end,
                    emit,
                )
            # The rest of the week, whatever happened.
            if clock.now() < end:
                loop.traffic(end)
            notifications = receiver.messages()
            loop_seconds = dict(loop.seconds)
        audit_ok = audit.verify(state).ok
    finally:
        background.stop()
        state.close()

    # Nothing else runs now: the tail of the embedding and the report use every core.
    batch = settings.model_copy(update={"embed_threads": os.cpu_count() or 1})
    with_vectors = embed_missing(
        batch, "prompt", None, progress=embed_progress, on_total=embed_total
    )
    embedded = background.stored + with_vectors.stored
    t_report = time.perf_counter()
    rep = build_weekly_report(batch)
    paths = [write_report(rep, None, settings)]
    if opts.write_html:
        paths.append(write_report(rep, None, settings, "html"))
    emit(
        Step(
            end,
            "report",
            f"weekly report {rep.week} written ({', '.join(p.name for p in paths)}); "
            f"{embedded} prompts embedded with {with_vectors.embedder}; audit chain "
            f"{'verified' if audit_ok else 'BROKEN'}",
            {
                "week": rep.week,
                "paths": [str(p) for p in paths],
                "audit_ok": audit_ok,
                "seconds": {
                    **{k: round(v, 1) for k, v in loop_seconds.items()},
                    "report": round(time.perf_counter() - t_report, 1),
                },
            },
        )
    )
    return DemoResult(
        timeline, rep, paths, incident_id, time.perf_counter() - t_start, notifications
    )


def _versions(res: live.SendResult) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in res.answers:
        out[a.version or "(failed)"] = out.get(a.version or "(failed)", 0) + 1
    return out


def _after_rollback(
    loop: _Loop,
    state: StateStore,
    tick: controller.TickReport,
    canary_start: datetime,
    canary_served: int,
    receiver: WebhookReceiver,
    emit: OnStep,
) -> None:
    inc = incidents.get(state, tick.incident_id or "")
    t = inc.trigger
    emit(
        Step(
            loop.clock.now(),
            "trip",
            f"SOP rule {t['rule_id']} tripped at {t.get('scope')}: {t.get('metric')} "
            f"{_num(t.get('value'))} vs {_num(t.get('baseline_value'))} on {t.get('baseline')} "
            f"(n {t.get('n')} vs {t.get('n_baseline')}, p = {_num(t.get('p_value'))}, "
            f"threshold {t.get('threshold')} {t.get('comparator')}) after "
            f"{canary_served} canary requests",
            {
                "rule_id": t["rule_id"],
                "scope": t.get("scope"),
                "window": t.get("window"),
                "window_start": (loop.clock.now() - _window(t)).isoformat(),
                "window_end": loop.clock.now().isoformat(),
                "canary_start": canary_start.isoformat(),
                "evidence": {
                    k: t.get(k)
                    for k in (
                        "metric",
                        "value",
                        "baseline_value",
                        "baseline",
                        "change",
                        "n",
                        "n_baseline",
                        "p_value",
                        "alpha",
                        "threshold",
                        "comparator",
                    )
                },
            },
        )
    )
    table = current_routes(state)
    assert table is not None
    emit(
        Step(
            loop.clock.now(),
            "routes",
            f"routes v{table.version}: 100 % on {table.stable.version} "
            f"(canary: {table.canary.version if table.canary else 'none'})",
            {
                "stable": table.stable.version,
                "canary": table.canary.version if table.canary else None,
                "route_version": table.version,
            },
        )
    )
    info = registry.get(state, CANDIDATE_VERSION)
    emit(
        Step(
            loop.clock.now(),
            "quarantine",
            f"{CANDIDATE_VERSION} is {info.status}: {info.quarantine_reason or ''}".rstrip(": "),
            {"version": CANDIDATE_VERSION, "status": info.status},
        )
    )
    rca = Path(inc.rca_dir or "")
    manifest = json.loads((rca / "manifest.json").read_text()) if inc.rca_dir else {}
    emit(
        Step(
            loop.clock.now(),
            "incident",
            f"incident {inc.id} {inc.status}: RCA logs in {rca} "
            f"({_rca_counts(manifest)}); steps {', '.join(inc.steps)}",
            {
                "incident_id": inc.id,
                "status": inc.status,
                "rule_id": inc.rule_id,
                "rca_dir": str(rca),
                "rca": manifest,
                "steps": list(inc.steps),
            },
        )
    )
    # Deliver the outbox now rather than in the background, so the timeline shows it landing.
    deliveries = notify.deliver_due(state)
    got = receiver.messages()
    files = sorted((loop.settings.data_dir / NOTIFY_DIR).glob("*.json"))
    emit(
        Step(
            loop.clock.now(),
            "notify",
            f"notified: {len(got)} message(s) at the on-call webhook, "
            f"{len(files)} file(s) in {loop.settings.data_dir / NOTIFY_DIR}"
            + (f" — “{got[0]['body'].get('text', '').splitlines()[0]}”" if got else ""),
            {
                "deliveries": [
                    {"channel": d.channel, "status": d.status, "error": d.error} for d in deliveries
                ],
                "webhook_messages": len(got),
                "files": [str(f) for f in files],
            },
        )
    )
    # An hour of traffic after the rollback: every answer from the stable version.
    res = loop.traffic(loop.clock.now() + timedelta(hours=1))
    emit(
        Step(
            loop.clock.now(),
            "traffic",
            f"{res.ok} requests in the hour after the rollback: "
            + ", ".join(f"{n} on {v}" for v, n in sorted(_versions(res).items())),
            {"requests": res.ok, "versions": _versions(res)},
        )
    )


def _revalidate_and_release(
    loop: _Loop,
    srv: dict[str, Any],
    state: StateStore,
    golden: Any,
    ops: tuple[str, keys.ApiKey],
    board: tuple[str, keys.ApiKey],
    end: datetime,
    emit: OnStep,
) -> None:
    fixed = ServerThread(
        fake_upstream.create_app(CANDIDATE_VERSION, latency_ms=2, seed=loop.opts.seed + 1)
    ).start()
    srv["stack"].callback(fixed.stop)
    staging = f"{fixed.url}/v1"
    registry.set_endpoint(
        state, CANDIDATE_VERSION, fixed.url, registry.key_actor(ops[1]), "fixed build on staging"
    )
    run = run_eval(
        loop.settings,
        golden,
        RunOptions.build(model=CANDIDATE_VERSION, endpoint=staging, name="v1.2-fixed-staging"),
        state=state,
    )
    summary = run.run.get("summary") or {}
    emit(
        Step(
            loop.clock.now(),
            "eval",
            f"fixed {CANDIDATE_VERSION} at staging {staging} re-validated: eval run "
            f"{run.run['name']} on {len(golden.items)} golden items",
            {
                "run": run.run["name"],
                "endpoint": staging,
                "items": len(golden.items),
                "summary": summary,
            },
        )
    )
    req = registry.request_release(
        state, CANDIDATE_VERSION, ops[1], "prompt template fixed; re-validated on staging"
    )
    result = registry.approve_release(
        state, CANDIDATE_VERSION, board[1], run.run["name"], note="gate passed; release"
    )
    emit(
        Step(
            loop.clock.now(),
            "approve",
            f"release of {CANDIDATE_VERSION} requested by {req.requested_by} and "
            f"{'approved' if result.approved else 'REFUSED'} by "
            f"{registry.key_actor(board[1])} (gate {result.comparison.get('gate')}: "
            f"{'passed' if result.comparison.get('passed') else 'failed'})",
            {
                "approved": result.approved,
                "requested_by": req.requested_by,
                "approved_by": registry.key_actor(board[1]),
                "requested_by_key": ops[1].id,
                "approved_by_key": board[1].id,
                "gate": result.comparison.get("gate"),
                "reasons": result.reasons,
            },
        )
    )
    if not result.approved:
        return
    r = controller.start(
        loop.settings,
        CANDIDATE_VERSION,
        default_plan(),
        registry.key_actor(ops[1]),
        now=loop.clock.now(),
        state=state,
    )
    time.sleep(ROUTES_TTL_S * 2)
    released_at = loop.clock.now()
    fired: list[str] = []
    served = 0
    unsafe = 0
    while loop.clock.now() < end:
        res = loop.traffic(min(loop.clock.now() + loop.step, end))
        served += sum(a.route == "canary" for a in res.answers)
        unsafe += sum(a.route == "canary" and a.quality == "unsafe" for a in res.answers)
        tick = loop.tick()
        fired += [f["rule_id"] for f in tick.fired]
        if tick.action == "rollback":
            break
    after = rollouts.get(state, r.id)
    emit(
        Step(
            released_at,
            "release",
            f"{CANDIDATE_VERSION} (fixed) released again: rollout {r.id} on "
            f"{default_plan().steps[0].label()}; {served} canary requests by the end of the "
            f"week, {unsafe} unsafe, {len(fired)} rule(s) fired; rollout {after.status}",
            {
                "rollout_id": r.id,
                "status": after.status,
                "canary_requests": served,
                "unsafe": unsafe,
                "fired": fired,
                "registry_status": registry.get(state, CANDIDATE_VERSION).status,
            },
        )
    )


def _window(trigger: dict[str, Any]) -> timedelta:
    w = trigger.get("window")
    return parse_duration(w) if w else timedelta(0)


def _rca_counts(manifest: dict[str, Any]) -> str:
    files = manifest.get("files") or {}
    if not files:
        return "manifest.json"
    return ", ".join(f"{v.get('rows', 0)} {k}" for k, v in files.items())


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
