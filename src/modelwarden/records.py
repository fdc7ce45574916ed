"""The request record (the seed's log schema) and the feedback and escalation events.

Field names follow the seed exactly. Feedback and escalations are also events of their own,
keyed by ``request_id``, because in production they arrive after the request they are about.

Validation rules (shared by every reader; the columnar Parquet path in
:mod:`modelwarden.ingest.columnar` takes its limits and reasons from this module, through
:func:`text_rules` and the constants below, and a test feeds bad records through both):

- required: ``request_id``, ``timestamp``, ``plant_id``, ``model_version``, ``user_prompt``,
  ``latency_ms``; ``generated_response`` unless ``error`` says the request failed;
- ``timestamp``: ISO-8601 with a zone (``Z`` or ``+hh:mm``), stored in UTC;
- ``latency_ms``: a finite number >= 0;
- ``human_feedback_score``: null or an integer from ``MIN_FEEDBACK_SCORE`` to ``MAX_FEEDBACK_SCORE``;
- token counts: null or an integer from 0 to ``MAX_TOKENS`` (the store's 32-bit column);
- embeddings: finite numbers that fit a 32-bit float (``|x| < FLOAT32_LIMIT``, the store keeps
  float32 vectors), 1 to ``MAX_EMBEDDING_DIM`` of them; every embedding of one embedder has one
  dimension (checked against the store at ingest);
- text: valid Unicode that UTF-8 can encode (JSON's ``"\\ud800"``, a lone surrogate, cannot be
  stored), with no control characters other than tab, newline and carriage return (NUL, ESC,
  DEL and the C1 controls are refused), within the size limits below;
- numbers are numbers: a JSON string where a number is expected (``"4"`` for a feedback score)
  is refused, as is a boolean. CSV cells are text, so the CSV reader parses the numeric columns
  by the schema first (:data:`INT_COLUMNS`, :data:`FLOAT_COLUMNS`).

These are the only rules: the CLI, the HTTP API and the gateway all call :func:`validate`, so a
record accepted here is one the store can hold.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

MAX_ID_CHARS = 200
MAX_PROMPT_CHARS = 32_768
MAX_RESPONSE_CHARS = 65_536
MAX_SHORT_TEXT_CHARS = 4_000
MAX_EMBEDDING_DIM = 4_096
MIN_FEEDBACK_SCORE, MAX_FEEDBACK_SCORE = 1, 5
INLINE_EMBEDDER = "inline"
# What the store's columns can hold (store/schema.py; a test keeps the two in step).
MAX_TOKENS = 2**31 - 1  # int32 token counts
# The smallest magnitude that rounds to infinity as a float32 (halfway between the largest
# float32, 3.4028234663852886e38, and 2**128); the largest float32 itself is accepted.
FLOAT32_LIMIT = 2.0**128 - 2.0**103
UTF8_BYTES_REASON = "is not valid Unicode text (its bytes are not UTF-8)"
TIMESTAMP_RANGE_REASON = "is out of range (years 1 to 9999 in UTC)"
UNICODE_REASON = "is not valid Unicode text (it holds a lone surrogate such as \\ud800)"
FINITE_REASON = "must be a finite number (no NaN or infinity)"
FLOAT32_REASON = "values must fit a 32-bit float (|x| <= 3.4e38)"
# C0 controls except tab, newline and carriage return; DEL; the C1 controls.
CONTROL_CHARS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
CONTROL_RE = re.compile(f"[{CONTROL_CHARS}]")
# The same class for RE2 (Arrow's regex engine), which the columnar path uses.
CONTROL_RE2 = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x{9f}]"

REQUEST_FIELDS: tuple[str, ...] = (
    "request_id",
    "timestamp",
    "plant_id",
    "model_version",
    "user_prompt",
    "prompt_embedding",
    "generated_response",
    "response_embedding",
    "latency_ms",
    "human_feedback_score",
    "contains_safety_keyword",
    "user_id",
    "session_id",
    "route",
    "parent_request_id",
    "prompt_tokens",
    "completion_tokens",
    "error",
    "embedding_model",
)

Route = Literal["stable", "canary", "shadow"]
EscalationCategory = Literal["incorrect", "nonsensical", "safety", "compliance", "other"]
ROUTES: tuple[str, ...] = get_args(Route)
ESCALATION_CATEGORIES: tuple[str, ...] = get_args(EscalationCategory)


def is_utf8(text: str) -> bool:
    """False for text UTF-8 cannot encode: lone surrogates, which JSON's escapes can carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode replaced by ``?``, for messages and raw copies."""
    return text if is_utf8(text) else text.encode("utf-8", "replace").decode("utf-8")


def control_reason(ch: str) -> str:
    return (
        f"holds a control character (U+{ord(ch):04X}); only tab, newline and carriage return "
        "are allowed in text"
    )


def _utf8(v: str) -> str:
    if not is_utf8(v):
        raise ValueError(UNICODE_REASON)
    bad = CONTROL_RE.search(v)
    if bad is not None:
        raise ValueError(control_reason(bad.group()))
    return v


def _fits_float32(v: list[float]) -> list[float]:
    if any(abs(x) >= FLOAT32_LIMIT for x in v):
        raise ValueError(FLOAT32_REASON)
    return v


UTF8 = AfterValidator(_utf8)  # last in each Annotated[str, ...], after the length limits
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), UTF8]
ShortText = Annotated[str, Field(max_length=MAX_SHORT_TEXT_CHARS), UTF8]
Embedding = Annotated[
    list[Annotated[float, Field(allow_inf_nan=False)]],
    Field(min_length=1, max_length=MAX_EMBEDDING_DIM),
    AfterValidator(_fits_float32),
]
TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
FeedbackScore = Annotated[int, Field(ge=MIN_FEEDBACK_SCORE, le=MAX_FEEDBACK_SCORE)]


NUMERIC_FIELDS = (
    "latency_ms",
    "human_feedback_score",
    "score",
    "prompt_tokens",
    "completion_tokens",
)
INT_COLUMNS = ("human_feedback_score", "score", "prompt_tokens", "completion_tokens")
FLOAT_COLUMNS = ("latency_ms",)
EMBEDDING_FIELDS = ("prompt_embedding", "response_embedding")


def _not_a_number(v: Any) -> str | None:
    if isinstance(v, bool):
        return "must be a number, not a boolean"
    if isinstance(v, str):
        shown = v if len(v) <= 40 else v[:40] + "…"
        return f"must be a number, not a string ({shown!r})"
    return None


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False, frozen=False)

    @field_validator("timestamp", mode="before", check_fields=False)
    @classmethod
    def _iso_only(cls, v: Any) -> Any:
        # A bare number would be read as Unix seconds; the schema promises ISO-8601 with a zone.
        if not isinstance(v, (str, datetime)):
            raise ValueError("timestamp must be an ISO-8601 string with a time zone")
        return v

    @field_validator(*NUMERIC_FIELDS, mode="before", check_fields=False)
    @classmethod
    def _numbers_only(cls, v: Any) -> Any:
        # JSON true would otherwise count as 1 (the worst rating, or a 1 ms latency), and "4"
        # as 4: a sender that quotes its numbers has a bug worth hearing about.
        problem = _not_a_number(v)
        if problem is not None:
            raise ValueError(problem)
        return v

    @field_validator(*EMBEDDING_FIELDS, mode="before", check_fields=False)
    @classmethod
    def _vector_of_numbers(cls, v: Any) -> Any:
        if isinstance(v, list):
            for i, x in enumerate(v):
                problem = _not_a_number(x)
                if problem is not None:
                    raise ValueError(f"item {i} {problem}")
        return v

    @field_validator("timestamp", mode="after", check_fields=False)
    @classmethod
    def _to_utc(cls, v: datetime) -> datetime:
        try:
            return v.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+05:00 is before the first representable UTC time
            raise ValueError(TIMESTAMP_RANGE_REASON) from None


class RequestRecord(_Base):
    """One request and its response, as logged by the gateway or sent by a client."""

    request_id: Id
    timestamp: AwareDatetime
    plant_id: Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), UTF8]
    model_version: Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), UTF8]
    user_prompt: Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS), UTF8]
    prompt_embedding: Embedding | None = None
    generated_response: Annotated[str, Field(max_length=MAX_RESPONSE_CHARS), UTF8] | None = None
    response_embedding: Embedding | None = None
    latency_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    human_feedback_score: FeedbackScore | None = None
    contains_safety_keyword: StrictBool | None = None
    user_id: Id | None = None
    session_id: Id | None = None
    route: Route | None = None
    parent_request_id: Id | None = None
    prompt_tokens: TokenCount | None = None
    completion_tokens: TokenCount | None = None
    error: ShortText | None = None
    embedding_model: Id | None = Field(
        default=None,
        description="Name of the embedder that produced the inline embeddings (default 'inline').",
    )

    @model_validator(mode="after")
    def _response_unless_error(self) -> RequestRecord:
        if self.generated_response is None and not self.error:
            raise ValueError("generated_response: required unless 'error' is set")
        return self


def _event_id(*parts: object) -> str:
    h = hashlib.blake2b(digest_size=12)
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\x1f")
    return h.hexdigest()


class FeedbackEvent(_Base):
    """A feedback score that arrived after its request (the user's 1-5 button)."""

    event_id: Id | None = None
    request_id: Id
    timestamp: AwareDatetime
    score: FeedbackScore
    comment: ShortText | None = None
    user_id: Id | None = None

    @model_validator(mode="after")
    def _default_id(self) -> FeedbackEvent:
        if self.event_id is None:
            self.event_id = _event_id("fb", self.request_id, self.timestamp.isoformat(), self.score)
        return self


class EscalationEvent(_Base):
    """A user-reported escalation about an answer; ``confirmed`` once a reviewer agrees."""

    event_id: Id | None = None
    request_id: Id
    timestamp: AwareDatetime
    reason: Annotated[str, Field(min_length=1, max_length=MAX_SHORT_TEXT_CHARS), UTF8]
    category: EscalationCategory = "other"
    confirmed: StrictBool = False
    reporter: Id | None = None

    @model_validator(mode="after")
    def _default_id(self) -> EscalationEvent:
        if self.event_id is None:
            self.event_id = _event_id(
                "esc", self.request_id, self.timestamp.isoformat(), self.reason
            )
        return self


@dataclass(frozen=True)
class TextRule:
    """The length limits of one text field, and whether a record must have it."""

    min_length: int
    max_length: int | None
    required: bool


def text_rules(model: type[BaseModel]) -> dict[str, TextRule]:
    """Every text field of ``model`` with its limits, read from the model's own JSON schema.

    Readers that do not validate record by record (the columnar Parquet path) take their
    limits from here, so the rules are stated once, in the annotations above.
    """
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    out: dict[str, TextRule] = {}
    for name, prop in schema["properties"].items():
        text = [
            v
            for v in prop.get("anyOf", [prop])
            if v.get("type") == "string" and "format" not in v  # not timestamps
        ]
        if text:
            rule = text[0]
            out[name] = TextRule(rule.get("minLength", 0), rule.get("maxLength"), name in required)
    return out


Kind = Literal["requests", "feedback", "escalations"]
KINDS: tuple[str, ...] = ("requests", "feedback", "escalations")
MODELS: dict[str, type[_Base]] = {
    "requests": RequestRecord,
    "feedback": FeedbackEvent,
    "escalations": EscalationEvent,
}
KEY_FIELD: dict[str, str] = {
    "requests": "request_id",
    "feedback": "event_id",
    "escalations": "event_id",
}


class FieldProblem(BaseModel):
    """Why a record was rejected: the field and the reason."""

    field: str
    reason: str


def problems_from(exc: ValidationError) -> list[FieldProblem]:
    """Turn pydantic's errors into (field, reason) pairs a user can act on."""
    out: list[FieldProblem] = []
    for err in exc.errors(include_url=False):
        loc = [str(x) for x in err.get("loc", ()) if not isinstance(x, int)]
        field = loc[0] if loc else ""
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "missing":
            reason = "required field is missing"
        elif err.get("type") == "timezone_aware":
            reason = "timestamp must be ISO-8601 with a time zone (e.g. 2024-10-28T10:05:00Z)"
        elif err.get("type") == "string_unicode":  # pydantic's own check, on some fields
            reason = UNICODE_REASON
        elif err.get("type") == "finite_number":
            reason = FINITE_REASON
        elif msg.startswith("Value error, "):
            text = msg.removeprefix("Value error, ")
            if ": " in text and not field:
                field, reason = text.split(": ", 1)
            else:
                reason = text
        else:
            reason = msg[0].lower() + msg[1:] if msg else "invalid"
            if field == "timestamp" and err.get("type", "").startswith("datetime"):
                reason = f"not an ISO-8601 timestamp ({reason})"
        out.append(FieldProblem(field=field or "(record)", reason=reason))
    return out


def validate(kind: str, raw: Any) -> tuple[_Base | None, list[FieldProblem]]:
    """Validate one raw record of ``kind``; returns the record or the problems found."""
    if not isinstance(raw, dict):
        return None, [FieldProblem(field="(record)", reason="a record must be a JSON object")]
    model = MODELS[kind]
    try:
        return model.model_validate(raw), []
    except ValidationError as exc:
        return None, problems_from(exc)


def dimension_problems(rec: Any, dims: dict[str, int]) -> list[FieldProblem]:
    """The embedding-width rule: every vector of one embedder has that embedder's width.

    ``dims`` maps embedder name to width (those already stored); a first vector of a new embedder
    sets its width in ``dims``, so later records of the same batch are held to it.
    """
    embedder = rec.embedding_model or INLINE_EMBEDDER
    problems = []
    for name in ("prompt_embedding", "response_embedding"):
        vec = getattr(rec, name)
        if vec is None:
            continue
        expected = dims.setdefault(embedder, len(vec))
        if len(vec) != expected:
            problems.append(
                FieldProblem(
                    field=name,
                    reason=f"has {len(vec)} dimensions; embedder {embedder!r} has {expected}",
                )
            )
    return problems


def is_finite_vector(values: list[float]) -> bool:
    return all(math.isfinite(v) for v in values)


def record_to_json(record: BaseModel) -> str:
    return json.dumps(record.model_dump(mode="json"), ensure_ascii=False)
