"""OpenTelemetry GenAI spans (OTLP traces) as request records.

An application that already traces its LLM calls with the OpenTelemetry GenAI semantic
conventions can export them to ``POST /v1/traces`` instead of writing logs of its own. Each span
that carries ``gen_ai.*`` attributes becomes one request record:

=====================================  ==============================================
record field                           from
=====================================  ==============================================
``request_id``                         ``modelwarden.request_id``, else ``TRACEID-SPANID``
``timestamp``, ``latency_ms``          the span's start, and end minus start
``model_version``                      ``gen_ai.request.model``, else ``gen_ai.response.model``
``user_prompt``                        the last user message of ``gen_ai.input.messages``
                                       (or the older ``gen_ai.prompt``)
``generated_response``                 the assistant's text in ``gen_ai.output.messages``
                                       (or the older ``gen_ai.completion``)
``prompt_tokens``, ``completion_tokens``  ``gen_ai.usage.input_tokens`` / ``output_tokens``
``plant_id``                           ``modelwarden.plant_id`` or ``plant.id`` on the span or
                                       its resource, else ``unknown``
``user_id``, ``session_id``            ``user.id`` / ``enduser.id``; ``session.id`` /
                                       ``gen_ai.conversation.id``
``route``                              ``modelwarden.route``
``error``                              the span's error status (message or ``error.type``)
``human_feedback_score``               a ``gen_ai.evaluation.result`` event on the span (below)
=====================================  ==============================================

User feedback travels as the GenAI ``gen_ai.evaluation.result`` event whose
``gen_ai.evaluation.name`` is ``human_feedback_score`` or ``user_feedback``, with the 1-5 score
in ``gen_ai.evaluation.score.value`` and an optional ``gen_ai.evaluation.explanation``. On the
GenAI span itself it becomes the record's ``human_feedback_score``. Feedback usually comes later,
on a span of its own: such a span (one without ``gen_ai.operation.name``) becomes a feedback
event for the request of its parent span (``TRACEID-PARENTSPANID``, or
``modelwarden.request_id`` on the event or the span), timed by the event. Other evaluations
(automated relevance scores and the like) are not feedback and are left out.

Spans without ``gen_ai.*`` attributes (HTTP, database, ...) are ignored. Both OTLP/HTTP
encodings are read: JSON (ids in hex) and, with ``opentelemetry-proto`` installed, protobuf.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from modelwarden.errors import MalformedBody

UNKNOWN_PLANT = "unknown"
STATUS_ERROR = 2


@dataclass
class Span:
    trace_id: str
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any] = field(default_factory=dict)
    status_code: int = 0
    status_message: str = ""
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    parent_span_id: str = ""
    event_times: list[int] = field(default_factory=list)

    def attr(self, *names: str) -> Any:
        for n in names:
            if n in self.attributes and self.attributes[n] not in (None, ""):
                return self.attributes[n]
        for n in names:
            if n in self.resource and self.resource[n] not in (None, ""):
                return self.resource[n]
        return None

    @property
    def is_genai(self) -> bool:
        return any(k.startswith("gen_ai.") for k in self.attributes)

    @property
    def is_request(self) -> bool:
        """A GenAI operation: one request record. A span that only carries feedback is not."""
        if not self.is_genai:
            return False
        return "gen_ai.operation.name" in self.attributes or not feedback_events(self)


# ---- OTLP/JSON -----------------------------------------------------------------------------
def _any_value(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        try:
            return int(v["intValue"])
        except (TypeError, ValueError):
            return None
    if "doubleValue" in v:
        return v["doubleValue"]
    if "boolValue" in v:
        return v["boolValue"]
    if "arrayValue" in v:
        return [_any_value(x) for x in (v["arrayValue"] or {}).get("values", []) or []]
    if "kvlistValue" in v:
        return _attributes((v["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def _attributes(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(items, list):
        return out
    for kv in items:
        if isinstance(kv, dict) and isinstance(kv.get("key"), str):
            out[kv["key"]] = _any_value(kv.get("value"))
    return out


def _nanos(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _hex_id(v: Any) -> str:
    # OTLP/JSON carries ids as hex; some exporters send protobuf's base64 form instead.
    if not isinstance(v, str):
        return ""
    try:
        int(v, 16)
        return v.lower()
    except ValueError:
        try:
            return base64.b64decode(v, validate=True).hex()
        except ValueError:
            return v


def spans_from_json(doc: Any) -> Iterator[Span]:
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans", []), list):
        raise MalformedBody(
            "an OTLP trace export needs 'resourceSpans' (a list)", field="resourceSpans"
        )
    for rs in doc.get("resourceSpans") or []:
        if not isinstance(rs, dict):
            continue
        resource = _attributes((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []:
            if not isinstance(ss, dict):
                continue
            for sp in ss.get("spans") or []:
                if not isinstance(sp, dict):
                    continue
                status = sp.get("status") or {}
                code = status.get("code", 0) if isinstance(status, dict) else 0
                if code == "STATUS_CODE_ERROR":
                    code = STATUS_ERROR
                events = [e for e in sp.get("events") or [] if isinstance(e, dict)]
                yield Span(
                    trace_id=_hex_id(sp.get("traceId")),
                    span_id=_hex_id(sp.get("spanId")),
                    parent_span_id=_hex_id(sp.get("parentSpanId")),
                    name=str(sp.get("name", "")),
                    start_ns=_nanos(sp.get("startTimeUnixNano")),
                    end_ns=_nanos(sp.get("endTimeUnixNano")),
                    attributes=_attributes(sp.get("attributes")),
                    resource=resource,
                    status_code=code if isinstance(code, int) else 0,
                    status_message=str(status.get("message", ""))
                    if isinstance(status, dict)
                    else "",
                    events=[
                        (str(e.get("name", "")), _attributes(e.get("attributes"))) for e in events
                    ],
                    event_times=[_nanos(e.get("timeUnixNano")) for e in events],
                )


# ---- OTLP/protobuf -------------------------------------------------------------------------
def _pb_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, kind)


def spans_from_protobuf(body: bytes) -> Iterator[Span]:
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(body)
    except DecodeError as exc:
        raise MalformedBody("the body is not an OTLP ExportTraceServiceRequest") from exc
    return spans_from_message(req)


def spans_from_message(req: ExportTraceServiceRequest) -> Iterator[Span]:
    """The spans of a decoded request (OTLP/gRPC hands the receiver the message itself)."""
    for rs in req.resource_spans:
        resource = {kv.key: _pb_value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for sp in ss.spans:
                yield Span(
                    trace_id=sp.trace_id.hex(),
                    span_id=sp.span_id.hex(),
                    parent_span_id=sp.parent_span_id.hex(),
                    name=sp.name,
                    start_ns=sp.start_time_unix_nano,
                    end_ns=sp.end_time_unix_nano,
                    attributes={kv.key: _pb_value(kv.value) for kv in sp.attributes},
                    resource=resource,
                    status_code=sp.status.code,
                    status_message=sp.status.message,
                    events=[
                        (e.name, {kv.key: _pb_value(kv.value) for kv in e.attributes})
                        for e in sp.events
                    ],
                    event_times=[e.time_unix_nano for e in sp.events],
                )


def protobuf_message(rejected: int, message: str, unknown: int = 0) -> ExportTraceServiceResponse:
    # ``unknown`` spans are already among ``rejected`` and named in ``message``.
    resp = ExportTraceServiceResponse()
    if rejected:
        resp.partial_success.rejected_spans = rejected
        resp.partial_success.error_message = message
    return resp


def protobuf_response(rejected: int, message: str) -> bytes:
    return protobuf_message(rejected, message).SerializeToString()


# ---- spans to records ----------------------------------------------------------------------
def _messages(value: Any) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if isinstance(value, dict):
        value = [value]
    return value if isinstance(value, list) else []


def _message_text(msg: Any) -> str:
    if not isinstance(msg, dict):
        return ""
    parts = msg.get("parts")
    if isinstance(parts, list):
        texts = [
            str(p.get("content", ""))
            for p in parts
            if isinstance(p, dict) and p.get("type", "text") == "text" and p.get("content")
        ]
        return "\n".join(texts)
    content = msg.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("text")
        )
    return ""


def _last_with_role(messages: list[Any], role: str) -> str | None:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == role:
            return _message_text(m)
    return None


def _legacy_text(value: Any, role: str) -> str | None:
    if value is None:
        return None
    msgs = _messages(value)
    if msgs:
        found = _last_with_role(msgs, role)
        if found is not None:
            return found
    return value if isinstance(value, str) else None


def _event_attr(span: Span, event: str, key: str) -> Any:
    for name, attrs in span.events:
        if name == event and key in attrs:
            return attrs[key]
    return None


EVALUATION_EVENT = "gen_ai.evaluation.result"
FEEDBACK_EVALUATIONS = ("human_feedback_score", "user_feedback")


def feedback_events(span: Span) -> list[tuple[dict[str, Any], int]]:
    """The span's user-feedback evaluations, as (event attributes, event time in ns)."""
    out = []
    times = span.event_times or [0] * len(span.events)
    for (name, attrs), t in zip(span.events, times, strict=False):
        evaluation = attrs.get("gen_ai.evaluation.name")
        if (
            name == EVALUATION_EVENT
            and isinstance(evaluation, str)
            and evaluation.lower() in FEEDBACK_EVALUATIONS
        ):
            out.append((attrs, t))
    return out


def _score(attrs: dict[str, Any]) -> Any:
    # Validated later like any score: an integer 1-5 (4.0 counts as 4; 4.5 is refused).
    return attrs.get("gen_ai.evaluation.score.value")


def span_feedback(span: Span) -> list[dict[str, Any]]:
    """Feedback events from a span that is not itself a request (validated later)."""
    out = []
    for attrs, t in feedback_events(span):
        request_id = _str_or_none(attrs.get("modelwarden.request_id")) or _str_or_none(
            span.attr("modelwarden.request_id")
        )
        if request_id is None and span.trace_id and span.parent_span_id:
            request_id = f"{span.trace_id}-{span.parent_span_id}"
        event = {
            "request_id": request_id,
            "timestamp": _iso_from_ns(t) or _iso_from_ns(span.start_ns),
            "score": _score(attrs),
            "comment": _str_or_none(attrs.get("gen_ai.evaluation.explanation")),
            "user_id": _str_or_none(span.attr("user.id", "enduser.id")),
        }
        out.append({k: v for k, v in event.items() if v is not None})
    return out


def _iso_from_ns(ns: int) -> str | None:
    if ns <= 0:
        return None
    try:
        return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        # Validation refuses it, naming the timestamp, as it does any time it cannot read.
        return f"{ns} ns since 1970 (out of range)"


def _str_or_none(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)


# ---- conventions ---------------------------------------------------------------------------
GENAI = "genai"
OPENINFERENCE = "openinference"
OPENLLMETRY = "openllmetry"
CONVENTIONS = (GENAI, OPENINFERENCE, OPENLLMETRY)
# Attribute prefixes of LLM telemetry; a span with such attributes that matches no convention
# above is counted as of an unknown convention rather than ignored like an HTTP span.
LLM_PREFIXES = ("llm.", "ai.", "openai.", "anthropic.", "langchain.", "traceloop.", "gen_ai.")
_OPENLLMETRY_KEYS = ("gen_ai.openai.api_base", "gen_ai.is_streaming", "llm.request.type")
_OPENLLMETRY_PREFIXES = ("traceloop.", "gen_ai.prompt.", "gen_ai.completion.", "llm.usage.")
# OpenLLMetry's workflow and task spans wrap the LLM calls; only the calls are requests.
_MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model", "llm.response.model")


def convention(span: Span) -> str | None:
    """The attribute convention of an LLM span; ``"unknown"`` for LLM-looking spans of none of
    them; None for spans that are not about an LLM (HTTP, database, ...)."""
    attrs = span.attributes
    if "openinference.span.kind" in attrs or "llm.model_name" in attrs:
        return OPENINFERENCE
    if any(k in attrs for k in _OPENLLMETRY_KEYS) or any(
        k.startswith(_OPENLLMETRY_PREFIXES) for k in attrs
    ):
        return OPENLLMETRY
    if any(k.startswith("gen_ai.") for k in attrs):
        return GENAI
    if any(k.startswith(LLM_PREFIXES) for k in attrs):
        return "unknown"
    return None


def is_llm_call(span: Span, conv: str | None) -> bool:
    """Whether the span of convention ``conv`` is one model call (one request record)."""
    if conv == OPENINFERENCE:
        kind = span.attributes.get("openinference.span.kind")
        return kind is None or str(kind).upper() == "LLM"
    if conv == OPENLLMETRY:
        kind = span.attributes.get("traceloop.span.kind")
        if kind is not None and str(kind) != "llm":
            return False
        return any(k in span.attributes for k in _MODEL_KEYS) or "llm.request.type" in (
            span.attributes
        )
    if conv == GENAI:
        return span.is_request
    return False


def _indexed(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """Flattened lists (``prefix.0.role``, ``prefix.0.content``...) as a list of dicts."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[len(prefix) :].partition(".")
        if index.isdigit() and rest:
            found.setdefault(int(index), {})[rest] = value
    return [found[i] for i in sorted(found)]


def _flat_messages(
    attrs: dict[str, Any], prefix: str, role_key: str, content_key: str
) -> list[Any]:
    msgs = []
    for m in _indexed(attrs, prefix):
        content = m.get(content_key)
        if content is None:  # OpenInference's multimodal form: contents.N.message_content.text
            texts = [
                str(v)
                for k, v in sorted(m.items())
                if k.startswith("message.contents.") and k.endswith(".message_content.text")
            ]
            content = "\n".join(texts) if texts else None
        if content == REDACTED:
            continue
        msgs.append({"role": m.get(role_key), "content": content})
    return msgs


# What OpenInference writes instead of the content when it is told to hide it.
REDACTED = "__REDACTED__"


def _json_messages(value: Any, *, output: bool) -> list[Any]:
    """Messages inside OpenInference's ``input.value`` / ``output.value`` (a request or answer)."""
    if not isinstance(value, str) or value == REDACTED:
        return []
    try:
        doc = json.loads(value)
    except ValueError:
        return [{"role": "assistant" if output else "user", "content": value}]
    if isinstance(doc, dict):
        if output and isinstance(doc.get("choices"), list):
            return [c.get("message") for c in doc["choices"] if isinstance(c, dict)]
        if not output and isinstance(doc.get("messages"), list):
            return list(doc["messages"])
        if isinstance(doc.get("input"), str):
            return [{"role": "user", "content": doc["input"]}]
        if output and isinstance(doc.get("output_text"), str):
            return [{"role": "assistant", "content": doc["output_text"]}]
    return []


def _metadata(span: Span) -> dict[str, Any]:
    value = span.attr("metadata")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


@dataclass
class Mapped:
    """One span's request record, the convention it was read with, and for each record field
    the span lacked, the attributes that were looked for."""

    record: dict[str, Any]
    convention: str
    missing: dict[str, str] = field(default_factory=dict)


_NEEDS = {
    GENAI: {
        "model_version": "gen_ai.response.model or gen_ai.request.model",
        "user_prompt": "user message in gen_ai.input.messages (or gen_ai.prompt)",
        "generated_response": "assistant message in gen_ai.output.messages (or gen_ai.completion)",
    },
    OPENINFERENCE: {
        "model_version": "llm.model_name",
        "user_prompt": "user message in llm.input_messages (or input.value)",
        "generated_response": "assistant message in llm.output_messages (or output.value)",
    },
    OPENLLMETRY: {
        "model_version": "gen_ai.response.model or gen_ai.request.model",
        "user_prompt": "user message in gen_ai.prompt.N.* (or gen_ai.input.messages)",
        "generated_response": "assistant message in gen_ai.completion.N.* "
        "(or gen_ai.output.messages)",
    },
}
CONVENTION_NAMES = {
    GENAI: "OpenTelemetry GenAI",
    OPENINFERENCE: "OpenInference",
    OPENLLMETRY: "OpenLLMetry",
}


def map_span(span: Span, conv: str = GENAI, plant_attribute: str | None = None) -> Mapped:
    """The request record an LLM span of convention ``conv`` describes (validated later)."""
    attrs = span.attributes
    meta = _metadata(span) if conv == OPENINFERENCE else {}
    assoc = "traceloop.association.properties."
    if conv == OPENINFERENCE:
        model = _str_or_none(span.attr("llm.model_name"))
        inputs = _flat_messages(attrs, "llm.input_messages.", "message.role", "message.content")
        outputs = _flat_messages(attrs, "llm.output_messages.", "message.role", "message.content")
        prompt = _last_with_role(inputs, "user")
        if prompt is None:
            prompt = _last_with_role(_json_messages(span.attr("input.value"), output=False), "user")
        response = _last_with_role(outputs, "assistant")
        if response is None:
            response = _last_with_role(
                _json_messages(span.attr("output.value"), output=True), "assistant"
            )
        prompt_tokens = span.attr("llm.token_count.prompt")
        completion_tokens = span.attr("llm.token_count.completion")
        user = span.attr("user.id") or meta.get("user_id")
        session = span.attr("session.id") or meta.get("session_id")
    else:
        model = _str_or_none(span.attr(*_MODEL_KEYS))
        prompt = _last_with_role(_messages(span.attr("gen_ai.input.messages")), "user")
        response = _last_with_role(_messages(span.attr("gen_ai.output.messages")), "assistant")
        if conv == OPENLLMETRY:
            if prompt is None:
                prompt = _last_with_role(_indexed(attrs, "gen_ai.prompt."), "user")
            if response is None:
                completions = _indexed(attrs, "gen_ai.completion.")
                response = _last_with_role(
                    [{"role": c.get("role", "assistant"), **c} for c in completions],
                    "assistant",
                )
        if prompt is None:
            prompt = _legacy_text(
                span.attr("gen_ai.prompt")
                or _event_attr(span, "gen_ai.content.prompt", "gen_ai.prompt"),
                "user",
            )
        if response is None:
            response = _legacy_text(
                span.attr("gen_ai.completion")
                or _event_attr(span, "gen_ai.content.completion", "gen_ai.completion"),
                "assistant",
            )
        prompt_tokens = span.attr(
            "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens"
        )
        completion_tokens = span.attr(
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.usage.completion_tokens",
        )
        user = span.attr("user.id", "enduser.id", assoc + "user_id", "gen_ai.request.user")
        session = span.attr("session.id", "gen_ai.conversation.id", assoc + "session_id")
    plant_keys = (plant_attribute,) if plant_attribute else ()
    plant = _str_or_none(
        span.attr(*plant_keys, "modelwarden.plant_id", "plant.id", "plant_id", assoc + "plant_id")
        or (meta.get(plant_attribute) if plant_attribute else None)
        or meta.get("plant_id")
    )
    error = None
    if span.status_code == STATUS_ERROR:
        error = span.status_message or _str_or_none(span.attr("error.type")) or "span error"
    record: dict[str, Any] = {
        "request_id": _str_or_none(span.attr("modelwarden.request_id"))
        or _str_or_none(meta.get("request_id"))
        or (f"{span.trace_id}-{span.span_id}" if span.trace_id and span.span_id else None),
        "timestamp": _iso_from_ns(span.start_ns),
        "plant_id": plant or UNKNOWN_PLANT,
        "model_version": model,
        "user_prompt": prompt,
        "generated_response": response,
        "latency_ms": (span.end_ns - span.start_ns) / 1e6
        if span.end_ns >= span.start_ns > 0
        else None,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "user_id": _str_or_none(user),
        "session_id": _str_or_none(session),
        "route": _str_or_none(span.attr("modelwarden.route")),
        "error": error,
    }
    feedback = feedback_events(span)
    if feedback:
        record["human_feedback_score"] = _score(feedback[-1][0])
    record = {k: v for k, v in record.items() if v is not None}
    needs = _NEEDS.get(conv, _NEEDS[GENAI])
    name = CONVENTION_NAMES.get(conv, conv)
    missing = {
        f: f"read as {name}: the span carries no {what}"
        for f, what in needs.items()
        if f not in record and not (f == "generated_response" and error)
    }
    return Mapped(record, conv, missing)


def span_to_record(span: Span, plant_attribute: str | None = None) -> dict[str, Any]:
    """The request record a span describes, read with the span's own convention."""
    conv = convention(span)
    return map_span(span, conv if conv in CONVENTIONS else GENAI, plant_attribute).record


__all__ = [
    "CONVENTIONS",
    "Mapped",
    "Span",
    "convention",
    "feedback_events",
    "is_llm_call",
    "map_span",
    "protobuf_message",
    "protobuf_response",
    "span_feedback",
    "span_to_record",
    "spans_from_json",
    "spans_from_message",
    "spans_from_protobuf",
]
