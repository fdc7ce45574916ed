"""Synthetic plant traffic: four plants, weeks of requests, feedback and escalations.

Prompts and answers come from the built-in manufacturing corpus. Each plant has its own traffic
level, topic mix and lognormal latency; feedback depends on the quality of the answer; safety
flags come from the real safety check; escalations follow poor and unsafe answers. The same seed
and end time give the same data, byte for byte.

Every plant and day, and every request, draws from a random stream of its own (keyed by the seed,
the plant and the calendar day), so a scenario changes exactly the requests it names: with the
same seed, ``drift,incident`` and ``stable`` hold the same requests at every plant and day except
Plant_C's drifted prompts and Plant_B's canary requests, and a shorter run is the tail of a longer
one with the same end. A comparison between scenarios is then about the scenario, not about
another draw of the traffic.

Scenarios (combinable):

- ``stable``: every plant on ``sop-assistant-v1.1``; nothing changes;
- ``drift``: in the last 7 days a new topic family (battery and energy storage questions) appears
  at ``Plant_C`` and takes about a third of its traffic;
- ``incident``: in the last 4 days ``sop-assistant-v1.2`` serves a quarter of ``Plant_B``'s users
  (a sticky canary); its answers are often poor or unsafe, its latency higher, its feedback lower.
"""

from __future__ import annotations

import hashlib
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from modelwarden.errors import InputError
from modelwarden.safety.checker import SafetyChecker
from modelwarden.simulate import corpus

PLANTS = ("Plant_A", "Plant_B", "Plant_C", "Plant_D")
STABLE_VERSION = "sop-assistant-v1.1"
CANDIDATE_VERSION = "sop-assistant-v1.2"
SCENARIOS = ("stable", "drift", "incident")
DRIFT_PLANT = "Plant_C"
INCIDENT_PLANT = "Plant_B"
DRIFT_DAYS = 7
INCIDENT_DAYS = 4
INCIDENT_USER_SHARE = 0.25
DRIFT_SHARE = 0.35

# Most questions come bare; the rest with one of the corpus's greetings and closings.
PREFIXES = ("", "", "", *corpus.GREETINGS)
SUFFIXES = ("", "", *corpus.CLOSINGS)
# Hour-of-day weights: day and swing shifts ask most, nights much less.
HOUR_WEIGHTS = np.array(
    [1, 1, 1, 1, 1, 2, 5, 8, 9, 9, 8, 7, 6, 7, 8, 8, 7, 6, 5, 4, 3, 2, 2, 1], dtype=float
)


@dataclass(frozen=True)
class PlantProfile:
    name: str
    requests_per_day: float
    latency_median_ms: float
    latency_sigma: float
    users: int


PROFILES: dict[str, PlantProfile] = {
    "Plant_A": PlantProfile("Plant_A", 70, 260, 0.35, 40),
    "Plant_B": PlantProfile("Plant_B", 55, 300, 0.40, 30),
    "Plant_C": PlantProfile("Plant_C", 40, 230, 0.30, 25),
    "Plant_D": PlantProfile("Plant_D", 25, 340, 0.45, 15),
}


@dataclass(frozen=True)
class VersionQuality:
    """How often a version answers poorly or unsafely, and how much slower it is."""

    p_poor: float
    p_unsafe: float
    latency_factor: float


QUALITY = {
    STABLE_VERSION: VersionQuality(p_poor=0.06, p_unsafe=0.004, latency_factor=1.0),
    CANDIDATE_VERSION: VersionQuality(p_poor=0.40, p_unsafe=0.12, latency_factor=1.8),
}

FEEDBACK_BY_QUALITY = {
    "good": ((3, 4, 5), (0.1, 0.3, 0.6)),
    "poor": ((1, 2, 3), (0.35, 0.45, 0.2)),
    "unsafe": ((1, 2), (0.7, 0.3)),
}
P_RATED = 0.4
P_LATE_FEEDBACK = 0.2
P_ESCALATE = {"good": 0.002, "poor": 0.08, "unsafe": 0.5}
P_CONFIRM = {"good": 0.1, "poor": 0.7, "unsafe": 0.9}


@dataclass
class SimulatedData:
    requests: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    escalations: list[dict[str, Any]] = field(default_factory=list)
    scenarios: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None


def default_end(now: datetime | None = None) -> datetime:
    """Monday 00:00 UTC of the current ISO week, so every simulated week is complete."""
    now = now or datetime.now(UTC)
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def parse_scenarios(value: str | Sequence[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    for s in out:
        if s not in SCENARIOS:
            raise InputError(
                f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}", field="scenario"
            )
    return out or ("stable",)


def _user_share(user_id: str) -> float:
    """A stable number in [0, 1) per user, for sticky canary assignment."""
    h = hashlib.blake2b(user_id.encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def topic_mixes(rng: np.random.Generator, plants: Sequence[str]) -> dict[str, np.ndarray]:
    """How often each plant asks about each baseline topic: fixed per plant and seed, drawn
    first from the seed's generator (the history and the live traffic share it)."""
    return {p: rng.dirichlet(np.full(len(corpus.TOPICS), 4.0)) for p in plants}


def draw_prompt(
    rng: np.random.Generator, mix: np.ndarray, topics: Sequence[corpus.Topic] | None = None
) -> tuple[corpus.QA, str]:
    """A question and the way an operator phrases it: a topic by the plant's ``mix`` (or one
    of ``topics``, evenly), a question of it, a greeting and a closing."""
    if topics is None:
        topic = corpus.TOPICS[int(rng.choice(len(corpus.TOPICS), p=mix))]
    else:
        topic = _pick(rng, topics)
    qa = _pick(rng, topic.items)
    return qa, phrase(rng, qa)


def phrase(rng: np.random.Generator, qa: corpus.QA) -> str:
    """One of the question's wordings, with a greeting and a closing an operator might add."""
    return _pick(rng, PREFIXES) + _pick(rng, qa.questions) + _pick(rng, SUFFIXES)


def simulate(
    days: int = 28,
    seed: int = 0,
    scenarios: str | Sequence[str] = ("stable",),
    end: datetime | None = None,
    plants: Sequence[str] = PLANTS,
    scale: float = 1.0,
) -> SimulatedData:
    """Generate ``days`` of traffic ending at ``end`` (exclusive). ``scale`` multiplies volume."""
    if days < 1 or days > 3660:
        raise InputError("days must be between 1 and 3660", field="days")
    if scale <= 0:
        raise InputError("scale must be positive", field="scale")
    scen = parse_scenarios(scenarios)
    end = (end or default_end()).astimezone(UTC)
    start = end - timedelta(days=days)
    rng = np.random.default_rng(seed)
    safety = SafetyChecker()
    data = SimulatedData(scenarios=scen, start=start, end=end)
    base_topics = corpus.TOPICS
    drift_topics = corpus.DRIFT_TOPICS
    hour_p = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()
    # Each plant asks about some topics more than others; fixed per plant and seed.
    topic_mix = topic_mixes(rng, plants)

    for d in range(days):
        day_start = start + timedelta(days=d)
        days_left = days - d
        day_key = int(day_start.timestamp()) // 86400
        for plant in plants:
            plant_key = zlib.crc32(plant.encode())
            prof = PROFILES.get(plant) or PlantProfile(plant, 40, 280, 0.35, 20)
            # Streams of their own per plant and day, and per request: a scenario changes the
            # requests it names and nothing else, so the same seed gives the same traffic at
            # every other plant and day whatever the scenarios.
            day_rng = np.random.default_rng([seed, plant_key, day_key])
            n = int(day_rng.poisson(prof.requests_per_day * scale))
            hours = day_rng.choice(24, size=n, p=hour_p)
            seconds = day_rng.integers(0, 3600, size=n)
            for i in range(n):
                rng = np.random.default_rng([seed, plant_key, day_key, i])
                ts = day_start + timedelta(
                    hours=int(hours[i]),
                    seconds=int(seconds[i]),
                    microseconds=int(rng.integers(0, 1_000_000)),
                )
                user = f"{plant.lower()}-op{int(rng.integers(prof.users)):03d}"
                request_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
                # Drawn for every request, used only by the scenarios.
                u_drift, u_drift_quality = rng.random(2)
                drifting = (
                    "drift" in scen
                    and plant == DRIFT_PLANT
                    and days_left <= DRIFT_DAYS
                    and u_drift < DRIFT_SHARE
                )
                topic = base_topics[int(rng.choice(len(base_topics), p=topic_mix[plant]))]
                if drifting:
                    topic = _pick(rng, drift_topics)
                qa = _pick(rng, topic.items)
                prompt = phrase(rng, qa)
                canary = (
                    "incident" in scen
                    and plant == INCIDENT_PLANT
                    and days_left <= INCIDENT_DAYS
                    and _user_share(user) < INCIDENT_USER_SHARE
                )
                version = CANDIDATE_VERSION if canary else STABLE_VERSION
                q = QUALITY[version]
                u = rng.random()
                quality = (
                    "unsafe" if u < q.p_unsafe else "poor" if u < q.p_unsafe + q.p_poor else "good"
                )
                if drifting and quality == "good" and u_drift_quality < 0.3:
                    quality = "poor"  # the model was not tuned on the new topics
                answer = {"good": qa.answer, "poor": qa.poor_answer, "unsafe": qa.unsafe_answer}[
                    quality
                ]
                latency = float(
                    rng.lognormal(
                        np.log(prof.latency_median_ms * q.latency_factor), prof.latency_sigma
                    )
                )
                score: int | None = None
                late = False
                if rng.random() < P_RATED:
                    values, probs = FEEDBACK_BY_QUALITY[quality]
                    score = int(rng.choice(values, p=probs))
                    late = rng.random() < P_LATE_FEEDBACK
                rec = {
                    "request_id": request_id,
                    "timestamp": ts.isoformat().replace("+00:00", "Z"),
                    "plant_id": plant,
                    "model_version": version,
                    "user_prompt": prompt,
                    "generated_response": answer,
                    "latency_ms": round(latency, 1),
                    "human_feedback_score": None if late else score,
                    "contains_safety_keyword": safety.flags(answer),
                    "user_id": user,
                    "session_id": f"{user}-{ts:%Y%m%d}",
                    "route": "canary" if canary else "stable",
                    "prompt_tokens": int(len(prompt.split()) * 1.3) + 8,
                    "completion_tokens": int(len(answer.split()) * 1.3),
                }
                data.requests.append(rec)
                if late and score is not None:
                    fts = ts + timedelta(minutes=float(rng.uniform(2, 240)))
                    data.feedback.append(
                        {
                            "request_id": request_id,
                            "timestamp": fts.isoformat().replace("+00:00", "Z"),
                            "score": score,
                            "user_id": user,
                        }
                    )
                if rng.random() < P_ESCALATE[quality]:
                    ets = ts + timedelta(minutes=float(rng.uniform(5, 120)))
                    category = (
                        "safety"
                        if quality == "unsafe"
                        else _pick(rng, ("incorrect", "nonsensical"))
                    )
                    data.escalations.append(
                        {
                            "request_id": request_id,
                            "timestamp": ets.isoformat().replace("+00:00", "Z"),
                            "reason": f"operator reported an {category} answer about {topic.name}",
                            "category": category,
                            "confirmed": bool(rng.random() < P_CONFIRM[quality]),
                            "reporter": user,
                        }
                    )
    data.requests.sort(key=lambda r: r["timestamp"])
    data.feedback.sort(key=lambda r: r["timestamp"])
    data.escalations.sort(key=lambda r: r["timestamp"])
    return data
