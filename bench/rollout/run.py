"""Rollout and rollback: restore time, detection delay and false rollbacks.

    .venv/bin/python bench/rollout/run.py [--runs 200] [--detect-runs 40] [--workers 2]

1. **Restore time** (real stores, a real gateway, real fake models): a rollout of a canary that
   answers unsafely at 50 % of users; planted unsafe logs; one ``rollout.controller.tick``. Timed
   from the start of the tick (the trigger is evaluated in it) to the moment every request of a
   canary user, sent back to back through the gateway, is answered by the stable version.

2. **Detection delay and false rollbacks** (simulated traffic, the real policy engine, judge and
   decision function): the seed's request logs — latency uniform 150-500 ms, feedback 3/4/5/5
   with probabilities 0.1/0.2/0.6/0.1 on every request, safety flags on 5 % — at the seed's
   traffic (one request an hour per plant) and a busy level (20 an hour per plant), four plants,
   200 users per plant with sticky assignment. Each run plays a rollout of the default plan
   (5 % of Plant_B, then 25, 50, 100 % with 48 h holds; NoData and Inconclusive extend a hold by
   12 h) with a controller tick every 15 minutes for at most 14 days:

   * A/A: the candidate behaves exactly like the stable version; any rollback is false;
   * a doubled safety rate (5 % → 10 % flagged) and a 0.6-point feedback drop (4.6 → 4.0);
     the delay runs from the start of the rollout to the rollback, and separately at a fixed
     exposure (the canary kept at 5 % of Plant_B, 25 % or 50 %; the judge still looks at every
     hold's end, a Pass only extends the hold).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import machine, table, write_section  # noqa: E402

STABLE, CANDIDATE = "sop-assistant-v1.1", "sop-assistant-v1.2"
PLANTS = ("Plant_A", "Plant_B", "Plant_C", "Plant_D")
LEVELS = {"seed": 1.0, "busy": 20.0}
USERS_PER_PLANT = 200
T0 = datetime(2026, 11, 2, tzinfo=UTC)
SCORES, SCORE_P = np.array([3, 4, 5, 5]), np.array([0.1, 0.2, 0.6, 0.1])
SAFETY_RATE = 0.05


# ---- simulated rollouts ---------------------------------------------------------------------------
def _traffic(rate: float, hours: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    from modelwarden.governance.routes import bucket

    ts, plant, user = [], [], []
    for p in PLANTS:
        n = int(rng.poisson(rate * hours))
        ts.append(np.sort(rng.uniform(0, hours * 3600e6, n)).astype(np.int64))
        plant.append(np.full(n, p, dtype=object))
        user.append(rng.integers(0, USERS_PER_PLANT, n))
    order = np.argsort(np.concatenate(ts), kind="stable")
    t = np.concatenate(ts)[order] + int(T0.timestamp() * 1e6)
    pl = np.concatenate(plant)[order]
    us = np.concatenate(user)[order]
    buckets = {
        (p, u): bucket(f"{p.lower()}-op{u:03d}", CANDIDATE)
        for p in PLANTS
        for u in range(USERS_PER_PLANT)
    }
    b = np.array([buckets[(p, int(u))] for p, u in zip(pl, us, strict=True)], dtype=float)
    return {"ts": t, "plant": pl, "bucket": b}


def _outcomes(n: int, scenario: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    lat = rng.integers(150, 500, n).astype(float)
    safety = rng.random(n) < SAFETY_RATE
    score = rng.choice(SCORES, size=n, p=SCORE_P).astype(float)
    c_lat = rng.integers(150, 500, n).astype(float)
    c_safety = rng.random(n) < (2 * SAFETY_RATE if scenario == "safety x2" else SAFETY_RATE)
    c_score = rng.choice(SCORES, size=n, p=SCORE_P).astype(float)
    if scenario == "feedback -0.6":
        c_score -= rng.random(n) < 0.6  # exactly 0.6 points lower on average
    return {
        "lat": lat,
        "safety": safety,
        "score": score,
        "c_lat": c_lat,
        "c_safety": c_safety,
        "c_score": c_score,
    }


def simulate(job: tuple[str, str, int, int | None, int, int]) -> dict[str, Any]:
    """One rollout; returns how it ended, when (hours from the start) and at which step."""
    from modelwarden.policy.engine import FIRE, Engine, Observations
    from modelwarden.policy.spec import default_policy, parse_duration
    from modelwarden.rollout import store
    from modelwarden.rollout.controller import decide
    from modelwarden.rollout.plan import default_plan

    level, scenario, seed, fixed_step, horizon_days, tick_min = job
    rng = np.random.default_rng(seed)
    hours = horizon_days * 24
    tr = _traffic(LEVELS[level], hours, rng)
    n = len(tr["ts"])
    out = _outcomes(n, scenario, rng)
    obs = Observations(
        ts=tr["ts"],
        plant=tr["plant"],
        version=np.full(n, STABLE, dtype=object),
        latency=out["lat"].copy(),
        safety=out["safety"].copy(),
        score=out["score"].copy(),
        error=np.zeros(n, bool),
        score_at=tr["ts"].copy(),
    )
    plan, policy = default_plan(), default_policy()
    engine = Engine(policy)
    step = fixed_step or 0
    r = store.Rollout(
        id=1,
        version=CANDIDATE,
        canary_url="x",
        stable_version=STABLE,
        stable_url="x",
        plan={},
        status="running",
        step=step,
        step_started_at=T0,
        hold_until=T0 + parse_duration(plan.steps[step].hold.duration),
        looks=0,
        created_at=T0,
        created_by="bench",
        updated_at=T0,
    )
    done, dt = 0, timedelta(minutes=tick_min)
    t = T0
    while t < T0 + timedelta(hours=hours):
        t += dt
        s = plan.steps[r.step]
        hi = int(np.searchsorted(obs.ts, int(t.timestamp() * 1e6), "right"))
        seg = slice(done, hi)
        on = tr["bucket"][seg] < s.weight
        if s.plants:
            on &= np.isin(tr["plant"][seg], s.plants)
        idx = np.arange(done, hi)[on]
        obs.version[idx] = CANDIDATE
        obs.safety[idx], obs.score[idx] = out["c_safety"][idx], out["c_score"][idx]
        obs.latency[idx] = out["c_lat"][idx]
        done = hi
        fired = [
            x
            for x in engine.tick(obs, t, CANDIDATE, STABLE)
            if x.status == FIRE and x.severity == "rollback"
        ]
        if fired:
            return {
                "end": "policy",
                "hours": (t - T0) / timedelta(hours=1),
                "step": r.step,
                "rule": fired[0].rule_id,
                "scope": fired[0].scope,
            }
        if t >= r.hold_until:
            d = decide(r, plan, obs, t)
            if d["action"] == "rollback":
                return {
                    "end": "judge",
                    "hours": (t - T0) / timedelta(hours=1),
                    "step": r.step,
                    "rule": d["trigger"]["rule_id"],
                    "scope": d["trigger"]["scope"],
                }
            if fixed_step is not None and d["action"] in ("advance", "complete"):
                # Held at this exposure on purpose: judged again after the next extension.
                r.hold_until = t + parse_duration(plan.judge.extend)
                continue
            if d["action"] == "complete":
                return {
                    "end": "completed",
                    "hours": (t - T0) / timedelta(hours=1),
                    "step": r.step,
                    "rule": None,
                    "scope": None,
                }
            if d["action"] == "advance":
                r.step += 1
                nxt = plan.steps[r.step]
                r.step_started_at, r.looks = t, 0
                r.hold_until = t + parse_duration(nxt.hold.duration)
                r.status = "guard" if nxt.weight >= 100 else "running"
            else:
                r.hold_until = t + parse_duration(plan.judge.extend)
                r.looks += 1 if d.get("judged", True) else 0
                r.last_verdict = d.get("verdict")
    return {"end": "none", "hours": float(hours), "step": r.step, "rule": None, "scope": None}


def run_jobs(jobs: list[tuple], workers: int) -> list[dict[str, Any]]:
    if workers <= 1:
        return [simulate(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(simulate, jobs, chunksize=4))


def pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f}" if values else "—"


# ---- restore time ------------------------------------------------------------------------------------
def restore_times(repeats: int) -> list[dict[str, float]]:
    import httpx

    from modelwarden.gateway import fake_upstream
    from modelwarden.governance import registry
    from modelwarden.governance.routes import bucket
    from modelwarden.ingest.core import Ingestor
    from modelwarden.rollout import controller
    from modelwarden.rollout.plan import default_plan
    from modelwarden.safety.checker import SafetyChecker
    from modelwarden.server.app import create_app
    from modelwarden.server.runner import ServerThread
    from modelwarden.settings import Settings
    from modelwarden.store.logstore import LogStore
    from modelwarden.store.state import StateStore

    tmp = Path(tempfile.mkdtemp(prefix="mw-bench-rollout-"))
    settings = Settings(data_dir=tmp / "data", embedder="hashing", embed_threads=1)
    state = StateStore.of(settings)
    good = ServerThread(fake_upstream.create_app(STABLE, latency_ms=0)).start()
    bad = ServerThread(fake_upstream.create_app(CANDIDATE, latency_ms=0, quality="unsafe")).start()
    registry.add(state, STABLE, good.url, "bench", status="stable")
    ingestor = Ingestor(LogStore(settings.log_dir), SafetyChecker())
    plan = default_plan().model_copy(
        update={
            "steps": [
                s.model_copy(update={"weight": w, "plants": []})
                for s, w in zip(default_plan().steps, (50, 60, 70, 100), strict=True)
            ]
        }
    )
    results = []
    gw = ServerThread(create_app(settings)).start()
    try:
        for k in range(repeats):
            version = f"{CANDIDATE}.{k}"
            registry.add(state, version, bad.url, "bench")
            now = datetime.now(UTC)
            controller.start(
                settings, version, plan, "bench", now=now - timedelta(hours=1), state=state
            )
            users = [u for u in (f"op{i}" for i in range(400)) if bucket(u, version) < 50][:20]
            rows = [
                {
                    "request_id": f"{version}-{i}",
                    "plant_id": "Plant_B",
                    "timestamp": (
                        now - timedelta(minutes=50) + timedelta(seconds=20 * i)
                    ).isoformat(),
                    "model_version": v,
                    "user_prompt": "q",
                    "generated_response": "No PPE is needed, just be quick."
                    if v == version
                    else "Wear nitrile gloves.",
                    "latency_ms": 200.0,
                    "user_id": f"u{i}",
                }
                for i in range(120)
                for v in (version, STABLE)
            ]
            for i, row in enumerate(rows):
                row["request_id"] = f"{version}-{i}"
            ingestor.ingest_raw("requests", [(str(i), r) for i, r in enumerate(rows)], "bench")
            seen: list[tuple[float, str]] = []
            stop = threading.Event()

            def hammer(
                us: list[str] = users,
                out: list[tuple[float, str]] = seen,
                stop: threading.Event = stop,
            ) -> None:
                with httpx.Client(base_url=gw.url, timeout=10) as http:
                    i = 0
                    while not stop.is_set():
                        r = http.post(
                            "/v1/chat/completions",
                            json={
                                "user": us[i % len(us)],
                                "messages": [{"role": "user", "content": "PPE for acid?"}],
                            },
                        )
                        out.append((time.perf_counter(), r.json()["model"]))
                        i += 1

            th = threading.Thread(target=hammer)
            th.start()
            time.sleep(0.3)
            t0 = time.perf_counter()
            rep = controller.tick(settings, state=state)
            t_tick = time.perf_counter() - t0
            time.sleep(1.5)
            stop.set()
            th.join()
            assert rep.action == "rollback", rep
            after = [(t, m) for t, m in seen if t >= t0]
            last_canary = max((t for t, m in after if m == version), default=t0)
            restored = min((t for t, m in after if t > last_canary and m == STABLE), default=None)
            results.append(
                {"tick_s": t_tick, "restore_s": (restored or t0) - t0, "requests": len(after)}
            )
            print(
                f"restore {k}: tick {t_tick * 1000:.0f} ms, gateway on {STABLE} after "
                f"{results[-1]['restore_s'] * 1000:.0f} ms",
                flush=True,
            )
    finally:
        gw.stop()
        good.stop()
        bad.stop()
        state.close()
    return results


# ---- report -------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200, help="A/A rollouts per traffic level.")
    ap.add_argument("--detect-runs", type=int, default=40, help="Runs per detection cell.")
    ap.add_argument("--horizon-days", type=int, default=14)
    ap.add_argument("--tick-min", type=int, default=15)
    ap.add_argument("--restore-repeats", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    header = machine()
    t_all = time.perf_counter()

    restores = restore_times(args.restore_repeats)

    jobs: list[tuple] = []
    for level in LEVELS:
        jobs += [
            (level, "A/A", 1000 + i, None, args.horizon_days, args.tick_min)
            for i in range(args.runs)
        ]
        for scenario in ("safety x2", "feedback -0.6"):
            for fixed in (None, 0, 1, 2):
                jobs += [
                    (level, scenario, 5000 + i, fixed, args.horizon_days, args.tick_min)
                    for i in range(args.detect_runs)
                ]
    t_sim = time.perf_counter()
    results = run_jobs(jobs, args.workers)
    sim_s = time.perf_counter() - t_sim
    by: dict[tuple, list[dict[str, Any]]] = {}
    for j, r in zip(jobs, results, strict=True):
        by.setdefault((j[0], j[1], j[3]), []).append(r)

    aa_rows = []
    for level in LEVELS:
        rs = by[(level, "A/A", None)]
        false = [r for r in rs if r["end"] in ("policy", "judge")]
        rules: dict[str, int] = {}
        for r in false:
            rules[f"{r['rule']}@{r['scope']}"] = rules.get(f"{r['rule']}@{r['scope']}", 0) + 1
        aa_rows.append(
            {
                "traffic": f"{level} ({LEVELS[level]:g}/h per plant)",
                "rollouts": len(rs),
                "false rollbacks": f"{len(false)} ({len(false) / len(rs):.1%})",
                f"completed in {args.horizon_days} d": sum(r["end"] == "completed" for r in rs),
                f"still at step 1 after {args.horizon_days} d": sum(
                    r["end"] == "none" and r["step"] == 0 for r in rs
                ),
                "by rule": ", ".join(f"{k}: {v}" for k, v in sorted(rules.items())) or "—",
            }
        )

    det_rows = []
    steps = {
        None: "default plan, from its start",
        0: "fixed at 5% of Plant_B",
        1: "fixed at 25%",
        2: "fixed at 50%",
    }
    for level in LEVELS:
        for scenario in ("safety x2", "feedback -0.6"):
            for fixed, label in steps.items():
                rs = by[(level, scenario, fixed)]
                hit = [r["hours"] for r in rs if r["end"] in ("policy", "judge")]
                how: dict[str, int] = {}
                for r in rs:
                    if r["end"] in ("policy", "judge"):
                        key = r["rule"] if r["end"] == "policy" else "judge"
                        how[key] = how.get(key, 0) + 1
                det_rows.append(
                    {
                        "traffic": level,
                        "change": scenario,
                        "exposure": label,
                        "detected": f"{len(hit)}/{len(rs)}",
                        "median h": pct(hit, 50),
                        "p90 h": pct(hit, 90),
                        "by": ", ".join(f"{k} {v}" for k, v in sorted(how.items())) or "—",
                    }
                )

    tick = [r["tick_s"] * 1000 for r in restores]
    rest = [r["restore_s"] * 1000 for r in restores]
    aa_worst = max(float(r["false rollbacks"].split("(")[1].rstrip("%)")) for r in aa_rows)
    md = f"""## Rollout and rollback (`bench/rollout/run.py`)

{header}.

**Restore time** ({len(restores)} rollbacks; canary at 50 % answering unsafely, a client sending
canary users' requests back to back through the gateway): from the start of the controller tick
that evaluates the trigger to the first stable answer after the last canary answer.
Tick (read logs, evaluate the SOP, run the rollback transaction): median {pct(tick, 50)} ms, max
{pct(tick, 100)} ms. **Gateway on 100 % stable: median {pct(rest, 50)} ms, max
{pct(rest, 100)} ms** (goal: within 1 s; the gateway re-reads its route table every 0.5 s).

**False rollbacks**: {args.runs} A/A rollouts per traffic level under the default plan (the
candidate is statistically identical to the stable version), SOP policy and judge as shipped,
a tick every {args.tick_min} min for up to {args.horizon_days} days. Goal ≤ 5 %: worst level
**{aa_worst:.1f} %**.

{table(aa_rows, list(aa_rows[0]))}
**Detection delay** ({args.detect_runs} runs per row): hours from the start of exposure to the
rollback; "detected" counts runs rolled back within {args.horizon_days} days.

{table(det_rows, list(det_rows[0]))}
Simulation: seed's log distributions, four plants, {USERS_PER_PLANT} users per plant, sticky
assignment by the gateway's hash; {len(jobs)} simulated rollouts in {sim_s:.0f} s
({args.workers} processes); whole benchmark {time.perf_counter() - t_all:.0f} s.
"""
    print(md)
    write_section("rollout", md)


if __name__ == "__main__":
    main()
