"""Live plant traffic sent to a running gateway, with the official ``openai`` client.

Where :mod:`modelwarden.simulate.traffic` writes logs, this module *asks*: each simulated operator
sends a question from the built-in corpus to ``POST /v1/chat/completions`` with the headers the
gateway routes on (the OpenAI ``user`` field for the sticky canary bucket, ``X-Plant-Id`` for the
plant), and some of them rate the answer afterwards through ``POST /v1/feedback``, with a score
that follows the answer's quality (a poor or unsafe answer is rated low), as real operators do.

Two ways to drive it:

- in real time (``modelwarden simulate --to-gateway URL --rate N``): ``N`` requests a second over
  the plants, stamped by the gateway's wall clock;
- in simulated time (the demo): :func:`plan_requests` lays out the requests of a window of
  simulated time, and :func:`send` moves a :class:`SimClock` to each request's time before it is
  sent, so a gateway created with that clock stamps the records in simulated time.

The same seed and window give the same requests.
"""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np

from modelwarden.errors import InputError
from modelwarden.net import tls_context
from modelwarden.simulate import corpus
from modelwarden.simulate.traffic import (
    FEEDBACK_BY_QUALITY,
    P_RATED,
    PLANTS,
    draw_prompt,
    topic_mixes,
)

# Requests an hour per plant in the demo's live phase: Plant_B is busy enough that a 5 % canary
# of its users serves the SOP's 30 requests in a few hours.
DEMO_RATES: dict[str, float] = {"Plant_A": 40.0, "Plant_B": 240.0, "Plant_C": 30.0, "Plant_D": 20.0}
# Operators per plant: enough that 5 % of them is a few dozen people.
DEFAULT_USERS = 600
USER_AGENT_PLANT_HEADER = "X-Plant-Id"


class SimClock:
    """A clock that a simulation moves by hand; never goes backwards. Thread-safe."""

    def __init__(self, start: datetime) -> None:
        self._t = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._t

    def set(self, t: datetime) -> datetime:
        with self._lock:
            if t > self._t:
                self._t = t
            return self._t

    def advance(self, by: timedelta) -> datetime:
        with self._lock:
            self._t += by
            return self._t


@dataclass(frozen=True)
class LiveRequest:
    at: datetime
    plant: str
    user: str
    prompt: str
    qa_key: str
    rates: bool  # whether this operator presses a feedback button afterwards
    seq: int


@dataclass
class Answer:
    request: LiveRequest
    status: int
    request_id: str | None = None
    version: str | None = None
    route: str | None = None
    quality: str | None = None
    score: int | None = None
    error: str | None = None


@dataclass
class SendResult:
    answers: list[Answer] = field(default_factory=list)
    feedback_sent: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> int:
        return sum(a.status == 200 for a in self.answers)

    @property
    def failed(self) -> int:
        return len(self.answers) - self.ok

    def by(self, *keys: str) -> Counter[tuple[Any, ...]]:
        """Answers counted by request/answer attributes, e.g. ``by("plant", "version")``."""
        out: Counter[tuple[Any, ...]] = Counter()
        for a in self.answers:
            out[tuple(getattr(a.request, k, None) or getattr(a, k, None) for k in keys)] += 1
        return out

    def extend(self, other: SendResult) -> None:
        self.answers.extend(other.answers)
        self.feedback_sent += other.feedback_sent
        self.seconds += other.seconds

    def summary_rows(self) -> list[dict[str, Any]]:
        rows = []
        for (plant, version, route), n in sorted(self.by("plant", "version", "route").items()):
            scores = [
                a.score
                for a in self.answers
                if a.request.plant == plant and a.version == version and a.score is not None
            ]
            rows.append(
                {
                    "plant_id": plant,
                    "model_version": version or "(failed)",
                    "route": route or "—",
                    "requests": n,
                    "unsafe": sum(
                        a.quality == "unsafe"
                        for a in self.answers
                        if a.request.plant == plant and a.version == version
                    ),
                    "rated": len(scores),
                    "feedback_avg": round(sum(scores) / len(scores), 2) if scores else None,
                }
            )
        return rows


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def plan_requests(
    start: datetime,
    end: datetime,
    rates: Mapping[str, float] | None = None,
    *,
    users: int = DEFAULT_USERS,
    seed: int = 0,
    epoch: datetime | None = None,
) -> list[LiveRequest]:
    """The requests of simulated time ``[start, end)``: ``rates`` requests an hour per plant,
    evenly spread with a seeded jitter, from ``users`` operators per plant, sorted by time.

    Slots and draws are counted from ``epoch`` (the Unix epoch by default): with an ``epoch``,
    the same seed gives the same requests at the same offsets whatever the calendar date, so a
    run that starts its clock at ``epoch`` plays the same traffic every time.
    """
    rates = dict(rates or DEMO_RATES)
    if end <= start:
        raise InputError("the window ends before it starts", field="end")
    for plant, rate in rates.items():
        if rate < 0:
            raise InputError(f"the rate of {plant} is negative", field="rate")
    if users < 1:
        raise InputError("users must be at least 1", field="users")
    origin = epoch.timestamp() if epoch is not None else 0.0
    if start.timestamp() < origin:
        raise InputError("the window starts before the epoch it is counted from", field="start")
    since, until = start.timestamp() - origin, end.timestamp() - origin
    # The plants ask what they asked in the history simulate() made with this seed: the same
    # topic mix per plant and the same wordings (no drift unless a scenario plants one).
    mixes = topic_mixes(
        np.random.default_rng(seed), [*PLANTS, *(p for p in rates if p not in PLANTS)]
    )
    out: list[LiveRequest] = []
    for plant, rate in rates.items():
        rng = np.random.default_rng([seed, zlib.crc32(plant.encode()), int(since)])
        # Requests whose slot falls in this window: slots are fixed in time, so consecutive
        # windows continue each other without a gap or a double.
        first = int(np.ceil(since * rate / 3600))
        last = int(np.ceil(until * rate / 3600))
        n = max(last - first, 0) if rate else 0
        for i in range(n):
            slot = origin + (first + i) * 3600 / rate
            at = datetime.fromtimestamp(slot, UTC)
            qa, prompt = draw_prompt(rng, mixes[plant])
            out.append(
                LiveRequest(
                    at=at,
                    plant=plant,
                    user=f"{plant.lower()}-op{int(rng.integers(users)):04d}",
                    prompt=prompt,
                    qa_key=qa.key,
                    rates=bool(rng.random() < P_RATED),
                    seq=first + i,
                )
            )
    out.sort(key=lambda r: (r.at, r.plant))
    return out


def quality_of(prompt: str, qa_key: str, answer: str) -> str:
    """good, poor or unsafe: which of the corpus answers ``answer`` is."""
    candidates = [corpus.find_qa(qa_key)]
    matched = corpus.match_question(prompt)
    if matched is not None:
        candidates.append(matched)
    for qa in candidates:
        if answer == qa.unsafe_answer:
            return "unsafe"
        if answer == qa.poor_answer:
            return "poor"
    return "good"


def score_for(quality: str, req: LiveRequest, seed: int = 0) -> int:
    """The operator's score for an answer of this quality (seeded by the request)."""
    values, probs = FEEDBACK_BY_QUALITY[quality]
    rng = np.random.default_rng([seed, zlib.crc32(req.plant.encode()), req.seq, 7])
    return int(rng.choice(values, p=probs))


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def _send_all(
    base_url: str,
    requests: Sequence[LiveRequest],
    *,
    api_key: str | None,
    clock: SimClock | None,
    concurrency: int,
    feedback: bool,
    seed: int,
    pace: Callable[[LiveRequest], float] | None,
    timeout: float,
) -> SendResult:
    # Imported here: the openai client takes a moment to import and only this path needs it.
    from openai import APIStatusError, AsyncOpenAI, DefaultAsyncHttpxClient

    base = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    client = AsyncOpenAI(
        base_url=f"{base}/v1",
        api_key=api_key or "none",
        max_retries=0,
        timeout=timeout,
        http_client=DefaultAsyncHttpxClient(verify=tls_context()),
    )
    result = SendResult()
    sem = asyncio.Semaphore(concurrency)
    rated: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    async def one(req: LiveRequest) -> None:
        async with sem:
            if clock is not None:
                clock.set(req.at)
            ans = Answer(request=req, status=0)
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model="sop-assistant",
                    messages=[{"role": "user", "content": req.prompt}],
                    user=req.user,
                    extra_headers={USER_AGENT_PLANT_HEADER: req.plant},
                )
                completion = raw.parse()
                ans.status = raw.http_response.status_code
                ans.request_id = raw.headers.get("x-request-id")
                ans.version = raw.headers.get("x-modelwarden-version") or completion.model
                ans.route = raw.headers.get("x-modelwarden-route")
                text = completion.choices[0].message.content or ""
                ans.quality = quality_of(req.prompt, req.qa_key, text)
                if feedback and req.rates and ans.request_id:
                    ans.score = score_for(ans.quality, req, seed)
                    when = clock.now() if clock is not None else datetime.now(UTC)
                    rated.append(
                        {
                            "request_id": ans.request_id,
                            "timestamp": _iso(max(when, req.at) + timedelta(seconds=30)),
                            "score": ans.score,
                            "user_id": req.user,
                        }
                    )
            except APIStatusError as exc:
                ans.status, ans.error = exc.status_code, str(exc.message)[:300]
            except Exception as exc:  # a refused connection, a timeout: counted, not fatal
                ans.status, ans.error = 0, f"{type(exc).__name__}: {exc}"[:300]
            result.answers.append(ans)

    tasks: list[asyncio.Task[None]] = []
    for req in requests:
        if pace is not None:
            wait = pace(req)
            if wait > 0:
                await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(req)))
        # Keep the queue short, so pacing and the simulated clock stay close to the sends.
        if len(tasks) >= concurrency * 4:
            await asyncio.gather(*tasks)
            tasks = []
    await asyncio.gather(*tasks)
    if rated:
        async with httpx.AsyncClient(
            base_url=base, headers=headers, timeout=timeout, verify=tls_context()
        ) as http:
            resp = await http.post("/v1/feedback", json={"records": rated})
            if resp.status_code == 200:
                result.feedback_sent = int(resp.json().get("accepted", 0))
    await client.close()
    result.seconds = time.perf_counter() - t0
    result.answers.sort(key=lambda a: (a.request.at, a.request.plant, a.request.seq))
    return result


def send(
    base_url: str,
    requests: Sequence[LiveRequest],
    *,
    api_key: str | None = None,
    clock: SimClock | None = None,
    concurrency: int = 16,
    feedback: bool = True,
    seed: int = 0,
    timeout: float = 30.0,
) -> SendResult:
    """Send ``requests`` to the gateway at ``base_url`` as fast as ``concurrency`` allows.

    With ``clock``, the clock moves to each request's simulated time before it is sent.
    """
    return asyncio.run(
        _send_all(
            base_url,
            requests,
            api_key=api_key,
            clock=clock,
            concurrency=concurrency,
            feedback=feedback,
            seed=seed,
            pace=None,
            timeout=timeout,
        )
    )


def run_realtime(
    base_url: str,
    rate: float,
    duration_s: float,
    *,
    plants: Sequence[str] = PLANTS,
    api_key: str | None = None,
    users: int = DEFAULT_USERS,
    concurrency: int = 32,
    feedback: bool = True,
    seed: int = 0,
) -> SendResult:
    """``rate`` requests a second (over ``plants``, in the demo's proportions) for
    ``duration_s`` seconds, paced on the wall clock."""
    if rate <= 0:
        raise InputError("rate must be positive (requests a second)", field="rate")
    if duration_s <= 0:
        raise InputError("duration must be positive (seconds)", field="duration")
    weights = {p: DEMO_RATES.get(p, 40.0) for p in plants}
    total = sum(weights.values())
    # Plan in a simulated hour that holds the wanted number of requests, then map it onto
    # the real duration.
    n_wanted = max(round(rate * duration_s), 1)
    start = datetime(2000, 1, 1, tzinfo=UTC)
    per_hour = {p: n_wanted * w / total for p, w in weights.items()}
    reqs = plan_requests(start, start + timedelta(hours=1), per_hour, users=users, seed=seed)
    t0 = time.monotonic()

    def pace(req: LiveRequest) -> float:
        due = (req.at - start).total_seconds() / 3600 * duration_s
        return due - (time.monotonic() - t0)

    return asyncio.run(
        _send_all(
            base_url,
            reqs,
            api_key=api_key,
            clock=None,
            concurrency=concurrency,
            feedback=feedback,
            seed=seed,
            pace=pace,
            timeout=30.0,
        )
    )
