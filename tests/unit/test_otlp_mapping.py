"""Any OTLP/JSON span maps onto records that validation can judge, never onto an exception."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelwarden.ingest import otlp
from modelwarden.records import validate

KEYS = [
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.evaluation.name",
    "gen_ai.evaluation.score.value",
    "gen_ai.evaluation.explanation",
    "modelwarden.request_id",
    "modelwarden.plant_id",
    "modelwarden.route",
    "user.id",
    "session.id",
    "error.type",
]
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(max_size=5),
)
SCALARS = st.one_of(
    st.builds(lambda v: {"stringValue": v}, st.text(max_size=20)),
    st.builds(
        lambda v: {"stringValue": v},
        st.sampled_from(
            [
                "chat",
                "human_feedback_score",
                "user_feedback",
                '[{"role": "user", "parts": [{"type": "text", "content": "q"}]}]',
                '[{"role": "assistant", "content": [{"text": "a"}]}]',
                '{"role": "user", "content": "q"}',
            ]
        ),
    ),
    st.builds(lambda v: {"intValue": v}, NUMBERS),
    st.builds(lambda v: {"doubleValue": v}, st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(lambda v: {"boolValue": v}, st.booleans()),
    st.just({}),
    st.integers(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(inner, max_size=3)),
        st.builds(
            lambda kvs: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kvs]}},
            st.lists(st.tuples(st.sampled_from(KEYS), inner), max_size=3),
        ),
    ),
    max_leaves=5,
)
ATTRS = st.lists(
    st.builds(
        lambda k, v: {"key": k, "value": v},
        st.one_of(st.sampled_from(KEYS), st.text(max_size=8)),
        VALUES,
    ),
    max_size=8,
)
IDS = st.one_of(st.text(alphabet="0123456789abcdef", max_size=32), st.text(max_size=8), st.none())
EVENTS = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["gen_ai.evaluation.result", "gen_ai.content.prompt", "x"]),
            "timeUnixNano": NUMBERS,
            "attributes": ATTRS,
        }
    ),
    max_size=3,
)
SPANS = st.fixed_dictionaries(
    {
        "traceId": IDS,
        "spanId": IDS,
        "parentSpanId": IDS,
        "name": st.text(max_size=8),
        "startTimeUnixNano": NUMBERS,
        "endTimeUnixNano": NUMBERS,
        "attributes": ATTRS,
        "events": EVENTS,
        "status": st.one_of(
            st.fixed_dictionaries(
                {
                    "code": st.one_of(st.integers(0, 2), st.just("STATUS_CODE_ERROR")),
                    "message": st.text(max_size=10),
                }
            ),
            st.just({}),
        ),
    }
)


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(spans=st.lists(SPANS, min_size=1, max_size=3), resource=ATTRS)
def test_any_span_maps_to_records_that_validation_judges(
    spans: list[dict[str, Any]], resource: list[dict[str, Any]]
) -> None:
    doc = {
        "resourceSpans": [{"resource": {"attributes": resource}, "scopeSpans": [{"spans": spans}]}]
    }
    parsed = list(otlp.spans_from_json(doc))
    assert len(parsed) == len(spans)
    for span in parsed:
        if span.is_request:
            rec, problems = validate("requests", otlp.span_to_record(span))
            assert (rec is None) == bool(problems)
        else:
            for fb in otlp.span_feedback(span):
                rec, problems = validate("feedback", fb)
                assert (rec is None) == bool(problems)
