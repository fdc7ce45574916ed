"""Validation of request records and feedback/escalation events, field by field."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from modelwarden.ingest import columnar
from modelwarden.records import (
    FLOAT32_LIMIT,
    MAX_EMBEDDING_DIM,
    MAX_ID_CHARS,
    MAX_PROMPT_CHARS,
    MAX_RESPONSE_CHARS,
    MAX_SHORT_TEXT_CHARS,
    MAX_TOKENS,
    EscalationEvent,
    FeedbackEvent,
    RequestRecord,
    text_rules,
    validate,
)

DROP = object()

REQUEST: dict[str, Any] = {
    "request_id": "uuid-1234-abcd",
    "timestamp": "2024-10-28T10:05:00Z",
    "plant_id": "Plant_B",
    "model_version": "sop-assistant-v1.1",
    "user_prompt": "What is the lubrication schedule for the main conveyor?",
    "prompt_embedding": [0.12, -0.05, 0.3],
    "generated_response": "The main conveyor requires lubrication every 200 operating hours.",
    "response_embedding": [0.08, 0.21, -0.4],
    "latency_ms": 250,
    "human_feedback_score": 4,
    "contains_safety_keyword": False,
}
FEEDBACK: dict[str, Any] = {
    "request_id": "uuid-1234-abcd",
    "timestamp": "2024-10-28T11:00:00Z",
    "score": 2,
}
ESCALATION: dict[str, Any] = {
    "request_id": "uuid-1234-abcd",
    "timestamp": "2024-10-28T12:00:00Z",
    "reason": "the torque value is wrong",
}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    raw = dict(base)
    for k, v in changes.items():
        if v is DROP:
            raw.pop(k, None)
        else:
            raw[k] = v
    return raw


def _fields(kind: str, raw: Any) -> list[str]:
    rec, problems = validate(kind, raw)
    assert rec is None, f"expected {raw!r} to be rejected"
    return [p.field for p in problems]


def _reasons(kind: str, raw: Any) -> dict[str, str]:
    rec, problems = validate(kind, raw)
    assert rec is None
    return {p.field: p.reason for p in problems}


def _ok(kind: str, raw: Any) -> Any:
    rec, problems = validate(kind, raw)
    assert problems == [], problems
    assert rec is not None
    return rec


# ---- the seed's record -------------------------------------------------------------------------
def test_seed_example_record_is_valid() -> None:
    rec = _ok("requests", REQUEST)
    assert isinstance(rec, RequestRecord)
    assert rec.timestamp == datetime(2024, 10, 28, 10, 5, tzinfo=UTC)
    assert rec.latency_ms == 250.0
    assert rec.human_feedback_score == 4
    assert rec.contains_safety_keyword is False
    assert rec.prompt_embedding == [0.12, -0.05, 0.3]


@pytest.mark.parametrize(
    "name",
    ["request_id", "timestamp", "plant_id", "model_version", "user_prompt", "latency_ms"],
)
def test_request_required_field_missing(name: str) -> None:
    assert _reasons("requests", _with(REQUEST, **{name: DROP})) == {
        name: "required field is missing"
    }


@pytest.mark.parametrize("name", ["request_id", "plant_id", "model_version", "user_prompt"])
def test_request_required_text_null_or_empty(name: str) -> None:
    assert _fields("requests", _with(REQUEST, **{name: None})) == [name]
    assert _fields("requests", _with(REQUEST, **{name: ""})) == [name]


@pytest.mark.parametrize(
    "name",
    [
        "prompt_embedding",
        "response_embedding",
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
    ],
)
def test_request_optional_fields_may_be_missing(name: str) -> None:
    rec = _ok("requests", _with(REQUEST, **{name: DROP}))
    assert getattr(rec, name) is None


def test_not_an_object_is_rejected_as_a_record() -> None:
    for raw in ([REQUEST], "a string", 3, None):
        rec, problems = validate("requests", raw)
        assert rec is None
        assert [(p.field, p.reason) for p in problems] == [
            ("(record)", "a record must be a JSON object")
        ]


def test_unknown_fields_are_ignored() -> None:
    rec = _ok("requests", _with(REQUEST, shift="night"))
    assert not hasattr(rec, "shift")


# ---- timestamps --------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["2024-10-28T10:05:00", "2024-10-28 10:05:00", "2024-10-28"])
def test_timestamp_without_zone_is_rejected(value: str) -> None:
    assert _reasons("requests", _with(REQUEST, timestamp=value)) == {
        "timestamp": "timestamp must be ISO-8601 with a time zone (e.g. 2024-10-28T10:05:00Z)"
    }


@pytest.mark.parametrize("value", ["yesterday", "28/10/2024 10:05", "2024-13-28T10:05:00Z", ""])
def test_timestamp_not_iso_is_rejected(value: str) -> None:
    reasons = _reasons("requests", _with(REQUEST, timestamp=value))
    assert list(reasons) == ["timestamp"]
    assert reasons["timestamp"].startswith("not an ISO-8601 timestamp")


def test_timestamp_as_a_unix_number_is_rejected() -> None:
    # The schema is ISO-8601 with a zone; a bare number is ambiguous (seconds or milliseconds).
    assert _fields("requests", _with(REQUEST, timestamp=1730109900)) == ["timestamp"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-10-28T10:05:00Z", datetime(2024, 10, 28, 10, 5, tzinfo=UTC)),
        ("2024-10-28T12:05:00+02:00", datetime(2024, 10, 28, 10, 5, tzinfo=UTC)),
        ("2024-10-28T05:35:00.250-04:30", datetime(2024, 10, 28, 10, 5, 0, 250000, tzinfo=UTC)),
        ("2024-10-28T01:30:00+05:30", datetime(2024, 10, 27, 20, 0, tzinfo=UTC)),
    ],
)
def test_timestamps_are_normalised_to_utc(value: str, expected: datetime) -> None:
    for kind, base in (("requests", REQUEST), ("feedback", FEEDBACK), ("escalations", ESCALATION)):
        ts = _ok(kind, _with(base, timestamp=value)).timestamp
        assert ts == expected
        assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0
        assert ts.tzinfo == UTC


# ---- latency -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-1, "input should be greater than or equal to 0"),
        (-0.001, "input should be greater than or equal to 0"),
        (math.nan, "must be a finite number (no NaN or infinity)"),
        (math.inf, "must be a finite number (no NaN or infinity)"),
        (-math.inf, "must be a finite number (no NaN or infinity)"),
    ],
)
def test_latency_out_of_range(value: float, reason: str) -> None:
    assert _reasons("requests", _with(REQUEST, latency_ms=value)) == {"latency_ms": reason}


@pytest.mark.parametrize("value", ["fast", "250ms", "", [250], {"ms": 250}, None])
def test_latency_not_a_number(value: Any) -> None:
    assert _fields("requests", _with(REQUEST, latency_ms=value)) == ["latency_ms"]


def test_latency_zero_is_accepted_and_numeric_text_is_not() -> None:
    assert _ok("requests", _with(REQUEST, latency_ms=0)).latency_ms == 0.0
    # A number sent as a string is a sender's bug (the CSV reader parses its cells by column).
    assert _reasons("requests", _with(REQUEST, latency_ms="250.5")) == {
        "latency_ms": "must be a number, not a string ('250.5')"
    }


@pytest.mark.parametrize("field", ["human_feedback_score", "prompt_tokens", "completion_tokens"])
def test_integers_sent_as_strings_are_rejected(field: str) -> None:
    assert _reasons("requests", _with(REQUEST, **{field: "4"})) == {
        field: "must be a number, not a string ('4')"
    }
    assert _reasons("feedback", _with(FEEDBACK, score="4")) == {
        "score": "must be a number, not a string ('4')"
    }


@pytest.mark.parametrize(
    ("field", "char"),
    [
        ("user_prompt", "\x00"),
        ("generated_response", "\x1b"),
        ("plant_id", "\x07"),
        ("request_id", "\x7f"),
        ("user_id", "\x85"),
    ],
)
def test_control_characters_in_text_are_rejected(field: str, char: str) -> None:
    assert _reasons("requests", _with(REQUEST, **{field: f"a{char}b"})) == {
        field: f"holds a control character (U+{ord(char):04X}); only tab, newline and "
        "carriage return are allowed in text"
    }
    assert _reasons("feedback", _with(FEEDBACK, comment=f"x{char}")).keys() == {"comment"}


def test_tabs_and_newlines_are_text() -> None:
    rec = _ok("requests", _with(REQUEST, user_prompt="one\n\ttwo\r\n"))
    assert rec.user_prompt == "one\n\ttwo\r\n"


def test_latency_boolean_is_rejected() -> None:
    assert _fields("requests", _with(REQUEST, latency_ms=True)) == ["latency_ms"]


# ---- feedback ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0, "input should be greater than or equal to 1"),
        (6, "input should be less than or equal to 5"),
        (-3, "input should be greater than or equal to 1"),
        (4.5, "input should be a valid integer, got a number with a fractional part"),
    ],
)
def test_feedback_score_out_of_range(value: Any, reason: str) -> None:
    assert _reasons("requests", _with(REQUEST, human_feedback_score=value)) == {
        "human_feedback_score": reason
    }
    assert _reasons("feedback", _with(FEEDBACK, score=value)) == {"score": reason}


@pytest.mark.parametrize(("value", "expected"), [(1, 1), (5, 5), (3.0, 3), (None, None)])
def test_feedback_score_accepted_values(value: Any, expected: int | None) -> None:
    assert _ok("requests", _with(REQUEST, human_feedback_score=value)).human_feedback_score == (
        expected
    )


def test_feedback_score_not_a_number() -> None:
    assert _fields("requests", _with(REQUEST, human_feedback_score="good")) == [
        "human_feedback_score"
    ]


def test_feedback_score_boolean_is_rejected() -> None:
    # ``true`` is not a 1-5 rating; taking it as 1 would record the worst score.
    assert _fields("requests", _with(REQUEST, human_feedback_score=True)) == [
        "human_feedback_score"
    ]
    assert _fields("feedback", _with(FEEDBACK, score=True)) == ["score"]


def test_feedback_event_score_is_required_and_not_null() -> None:
    assert _reasons("feedback", _with(FEEDBACK, score=DROP)) == {
        "score": "required field is missing"
    }
    assert _fields("feedback", _with(FEEDBACK, score=None)) == ["score"]


# ---- safety flag and other typed fields ---------------------------------------------------------
@pytest.mark.parametrize("value", ["yes", "maybe", 2, [True]])
def test_safety_flag_must_be_boolean(value: Any) -> None:
    assert _fields("requests", _with(REQUEST, contains_safety_keyword=value)) == [
        "contains_safety_keyword"
    ]


@pytest.mark.parametrize("name", ["prompt_tokens", "completion_tokens"])
def test_token_counts_are_non_negative_integers(name: str) -> None:
    assert _fields("requests", _with(REQUEST, **{name: -1})) == [name]
    assert _fields("requests", _with(REQUEST, **{name: 1.5})) == [name]
    assert getattr(_ok("requests", _with(REQUEST, **{name: 0})), name) == 0


# ---- embeddings --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["prompt_embedding", "response_embedding"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ([0.1, math.nan, 0.3], "must be a finite number (no NaN or infinity)"),
        ([0.1, math.inf], "must be a finite number (no NaN or infinity)"),
        ([], "list should have at least 1 item after validation, not 0"),
        (
            [0.0] * (MAX_EMBEDDING_DIM + 1),
            f"list should have at most {MAX_EMBEDDING_DIM} items after validation, "
            f"not {MAX_EMBEDDING_DIM + 1}",
        ),
    ],
)
def test_embedding_values_and_length(name: str, value: list[float], reason: str) -> None:
    assert _reasons("requests", _with(REQUEST, **{name: value})) == {name: reason}


@pytest.mark.parametrize("name", ["prompt_embedding", "response_embedding"])
def test_embedding_not_numbers(name: str) -> None:
    assert _reasons("requests", _with(REQUEST, **{name: [0.5, "b"]})) == {
        name: "item 1 must be a number, not a string ('b')"
    }
    assert _fields("requests", _with(REQUEST, **{name: "0.1,0.2"})) == [name]


def test_embedding_longest_allowed() -> None:
    rec = _ok("requests", _with(REQUEST, prompt_embedding=[0.5] * MAX_EMBEDDING_DIM))
    assert len(rec.prompt_embedding) == MAX_EMBEDDING_DIM


# ---- text size limits --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("request_id", MAX_ID_CHARS),
        ("plant_id", MAX_ID_CHARS),
        ("model_version", MAX_ID_CHARS),
        ("user_prompt", MAX_PROMPT_CHARS),
        ("generated_response", MAX_RESPONSE_CHARS),
        ("user_id", MAX_ID_CHARS),
        ("session_id", MAX_ID_CHARS),
        ("parent_request_id", MAX_ID_CHARS),
        ("error", MAX_SHORT_TEXT_CHARS),
        ("embedding_model", MAX_ID_CHARS),
    ],
)
def test_request_text_limits(name: str, limit: int) -> None:
    assert getattr(_ok("requests", _with(REQUEST, **{name: "x" * limit})), name) == "x" * limit
    assert _reasons("requests", _with(REQUEST, **{name: "x" * (limit + 1)})) == {
        name: f"string should have at most {limit} characters"
    }


@pytest.mark.parametrize(
    ("kind", "base", "name", "limit"),
    [
        ("feedback", FEEDBACK, "comment", MAX_SHORT_TEXT_CHARS),
        ("feedback", FEEDBACK, "request_id", MAX_ID_CHARS),
        ("feedback", FEEDBACK, "event_id", MAX_ID_CHARS),
        ("escalations", ESCALATION, "reason", MAX_SHORT_TEXT_CHARS),
        ("escalations", ESCALATION, "reporter", MAX_ID_CHARS),
    ],
)
def test_event_text_limits(kind: str, base: dict[str, Any], name: str, limit: int) -> None:
    _ok(kind, _with(base, **{name: "x" * limit}))
    assert _fields(kind, _with(base, **{name: "x" * (limit + 1)})) == [name]


def test_multibyte_text_is_limited_in_characters_not_bytes() -> None:
    text = "é" * MAX_PROMPT_CHARS  # twice as many bytes as characters
    assert _ok("requests", _with(REQUEST, user_prompt=text)).user_prompt == text


# ---- route -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["stable", "canary", "shadow", None])
def test_route_known_values(value: str | None) -> None:
    assert _ok("requests", _with(REQUEST, route=value)).route == value


@pytest.mark.parametrize("value", ["blue", "Canary", "", "prod"])
def test_route_unknown_values(value: str) -> None:
    assert _reasons("requests", _with(REQUEST, route=value)) == {
        "route": "input should be 'stable', 'canary' or 'shadow'"
    }


# ---- generated_response unless error -------------------------------------------------------------
def test_generated_response_required_without_error() -> None:
    expected = {"generated_response": "required unless 'error' is set"}
    assert _reasons("requests", _with(REQUEST, generated_response=DROP)) == expected
    assert _reasons("requests", _with(REQUEST, generated_response=None)) == expected
    assert _reasons("requests", _with(REQUEST, generated_response=None, error="")) == expected


def test_generated_response_optional_when_the_request_failed() -> None:
    rec = _ok("requests", _with(REQUEST, generated_response=DROP, error="upstream timeout"))
    assert rec.generated_response is None
    assert rec.error == "upstream timeout"


def test_empty_response_is_a_response() -> None:
    assert _ok("requests", _with(REQUEST, generated_response="")).generated_response == ""


def test_several_problems_are_all_reported() -> None:
    raw = _with(REQUEST, plant_id=DROP, latency_ms=-5, human_feedback_score=9, route="blue")
    assert sorted(_fields("requests", raw)) == [
        "human_feedback_score",
        "latency_ms",
        "plant_id",
        "route",
    ]


# ---- feedback and escalation events ------------------------------------------------------------
@pytest.mark.parametrize("name", ["request_id", "timestamp", "score"])
def test_feedback_required_fields(name: str) -> None:
    assert _reasons("feedback", _with(FEEDBACK, **{name: DROP})) == {
        name: "required field is missing"
    }


@pytest.mark.parametrize("name", ["request_id", "timestamp", "reason"])
def test_escalation_required_fields(name: str) -> None:
    assert _reasons("escalations", _with(ESCALATION, **{name: DROP})) == {
        name: "required field is missing"
    }


@pytest.mark.parametrize("kind,base", [("feedback", FEEDBACK), ("escalations", ESCALATION)])
def test_event_timestamp_needs_a_zone(kind: str, base: dict[str, Any]) -> None:
    assert _fields(kind, _with(base, timestamp="2024-10-28T11:00:00")) == ["timestamp"]
    assert _fields(kind, _with(base, timestamp="soon")) == ["timestamp"]


def test_escalation_defaults_and_values() -> None:
    rec = _ok("escalations", ESCALATION)
    assert isinstance(rec, EscalationEvent)
    assert (rec.category, rec.confirmed, rec.reporter) == ("other", False, None)
    for cat in ("incorrect", "nonsensical", "safety", "compliance", "other"):
        assert _ok("escalations", _with(ESCALATION, category=cat)).category == cat
    assert _ok("escalations", _with(ESCALATION, confirmed=True)).confirmed is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("category", "angry"),
        ("category", None),
        ("confirmed", "yes"),
        ("confirmed", 1),
        ("reason", ""),
    ],
)
def test_escalation_bad_values(name: str, value: Any) -> None:
    assert _fields("escalations", _with(ESCALATION, **{name: value})) == [name]


def test_feedback_event_id_is_deterministic() -> None:
    a = _ok("feedback", FEEDBACK)
    b = _ok("feedback", dict(FEEDBACK))
    assert isinstance(a, FeedbackEvent)
    assert a.event_id is not None and len(a.event_id) == 24
    assert a.event_id == b.event_id
    # The same instant written in another zone is the same event.
    c = _ok("feedback", _with(FEEDBACK, timestamp="2024-10-28T12:00:00+01:00"))
    assert c.event_id == a.event_id
    # A comment does not make it another event; a different score or time does.
    assert _ok("feedback", _with(FEEDBACK, comment="meh")).event_id == a.event_id
    others = {
        _ok("feedback", _with(FEEDBACK, score=3)).event_id,
        _ok("feedback", _with(FEEDBACK, timestamp="2024-10-28T11:00:01Z")).event_id,
        _ok("feedback", _with(FEEDBACK, request_id="other")).event_id,
    }
    assert len(others) == 3 and a.event_id not in others


def test_escalation_event_id_is_deterministic() -> None:
    a = _ok("escalations", ESCALATION)
    assert a.event_id == _ok("escalations", dict(ESCALATION)).event_id
    assert a.event_id == _ok("escalations", _with(ESCALATION, confirmed=True)).event_id
    assert a.event_id != _ok("escalations", _with(ESCALATION, reason="unsafe advice")).event_id
    assert a.event_id != _ok("feedback", FEEDBACK).event_id


def test_given_event_id_is_kept() -> None:
    assert _ok("feedback", _with(FEEDBACK, event_id="fb-1")).event_id == "fb-1"
    assert _ok("escalations", _with(ESCALATION, event_id="esc-1")).event_id == "esc-1"
    assert _fields("feedback", _with(FEEDBACK, event_id="")) == ["event_id"]


# ---- what the store's columns can hold ---------------------------------------------------------
def test_store_limits_match_the_store_schema() -> None:
    import numpy as np
    import pyarrow as pa

    from modelwarden.store.schema import REQUESTS, embedding_schema

    for name in ("prompt_tokens", "completion_tokens"):
        t = REQUESTS.field(name).type
        assert pa.types.is_integer(t) and 2 ** (t.bit_width - 1) - 1 == MAX_TOKENS
    assert embedding_schema(4).field("vector").type.value_type == pa.float32()
    # FLOAT32_LIMIT is the first magnitude that a float32 cannot hold.
    below = float(np.nextafter(FLOAT32_LIMIT, 0))
    with np.errstate(over="ignore"):
        assert np.isinf(np.float32(FLOAT32_LIMIT))
        assert np.float32(below) == np.finfo(np.float32).max


@pytest.mark.parametrize("name", ["prompt_tokens", "completion_tokens"])
def test_token_counts_fit_the_stores_32_bit_column(name: str) -> None:
    assert getattr(_ok("requests", _with(REQUEST, **{name: MAX_TOKENS})), name) == MAX_TOKENS
    for value in (MAX_TOKENS + 1, 3_000_000_000, 10**30):
        assert _reasons("requests", _with(REQUEST, **{name: value})) == {
            name: "input should be less than or equal to 2147483647"
        }


@pytest.mark.parametrize("name", ["prompt_embedding", "response_embedding"])
def test_embedding_values_fit_a_32_bit_float(name: str) -> None:
    # The largest float32, as it is usually printed, rounds to itself and is kept.
    assert getattr(_ok("requests", _with(REQUEST, **{name: [3.4028235e38, -1.0]})), name)[0] == (
        3.4028235e38
    )
    for value in ([0.5, 1e39], [-3.5e38, 0.0], [FLOAT32_LIMIT], [1e300]):
        assert _reasons("requests", _with(REQUEST, **{name: value})) == {
            name: "values must fit a 32-bit float (|x| <= 3.4e38)"
        }


LONE = json.loads('"a\\ud800b"')  # what JSON's escapes can carry and UTF-8 cannot
UNICODE = "is not valid Unicode text (it holds a lone surrogate such as \\ud800)"


@pytest.mark.parametrize(
    ("kind", "base", "name"),
    [
        *(
            ("requests", REQUEST, n)
            for n in (
                "request_id",
                "plant_id",
                "model_version",
                "user_prompt",
                "generated_response",
                "user_id",
                "session_id",
                "parent_request_id",
                "error",
                "embedding_model",
            )
        ),
        ("feedback", FEEDBACK, "request_id"),
        ("feedback", FEEDBACK, "comment"),
        ("feedback", FEEDBACK, "user_id"),
        ("feedback", FEEDBACK, "event_id"),
        ("escalations", ESCALATION, "reason"),
        ("escalations", ESCALATION, "reporter"),
    ],
)
def test_text_that_utf8_cannot_encode_is_rejected(
    kind: str, base: dict[str, Any], name: str
) -> None:
    assert _reasons(kind, _with(base, **{name: LONE})) == {name: UNICODE}
    # A paired surrogate is a real character and fine.
    text = json.loads('"gear \\ud83d\\udd27"')
    assert getattr(_ok(kind, _with(base, **{name: text})), name) == "gear \U0001f527"


def test_a_lone_surrogate_in_an_unknown_field_is_ignored_with_the_field() -> None:
    rec = _ok("requests", _with(REQUEST, note=LONE, **{LONE: 1}))
    assert not hasattr(rec, "note")


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T04:59:59+05:00"],
)
def test_timestamp_out_of_range_in_utc_is_rejected(value: str) -> None:
    for kind, base in (("requests", REQUEST), ("feedback", FEEDBACK), ("escalations", ESCALATION)):
        assert _reasons(kind, _with(base, timestamp=value)) == {
            "timestamp": "is out of range (years 1 to 9999 in UTC)"
        }


def test_timestamp_at_the_ends_of_the_range_is_accepted() -> None:
    assert _ok("requests", _with(REQUEST, timestamp="0001-01-01T05:00:00+05:00")).timestamp == (
        datetime(1, 1, 1, tzinfo=UTC)
    )
    assert _ok("requests", _with(REQUEST, timestamp="9999-12-31T23:59:59.999999Z")).timestamp == (
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    )


# ---- the rules the columnar reader takes from here -----------------------------------------------
def test_text_rules_are_the_limits_the_record_path_enforces() -> None:
    rules = text_rules(RequestRecord)
    assert set(rules) == {
        "request_id",
        "plant_id",
        "model_version",
        "user_prompt",
        "generated_response",
        "user_id",
        "session_id",
        "route",
        "parent_request_id",
        "error",
        "embedding_model",
    }
    for name, rule in rules.items():
        if rule.max_length is not None:
            _ok("requests", _with(REQUEST, **{name: "x" * rule.max_length}))
            assert _fields("requests", _with(REQUEST, **{name: "x" * (rule.max_length + 1)})) == [
                name
            ]
        if rule.min_length == 1:
            assert _fields("requests", _with(REQUEST, **{name: ""})) == [name]
        # generated_response is required unless error is set: a rule of the record, not the field.
        _, problems = validate("requests", _with(REQUEST, **{"error": "timeout", name: DROP}))
        assert ([p.field for p in problems] == [name]) is rule.required
    # The columnar reader checks exactly these fields with exactly these limits.
    checked = {**columnar.REQUIRED_STRINGS, **columnar.OPTIONAL_STRINGS}
    assert checked == {n: (r.min_length, r.max_length) for n, r in rules.items()}
    assert set(columnar.REQUIRED_STRINGS) == {n for n, r in rules.items() if r.required}
