"""Run as a script: instrument the official ``openai`` client with one real instrumentation
package and export its spans to ModelWarden over OTLP (HTTP or gRPC).

    python otlp_emitter.py CONVENTION UPSTREAM_URL HTTP_URL|GRPC_HOST:PORT KEY http|grpc

CONVENTION is ``openinference`` (openinference-instrumentation-openai), ``openllmetry``
(opentelemetry-instrumentation-openai) or ``genai`` (opentelemetry-instrumentation-openai-v2).
Each runs in a process of its own, since they patch the same client. The last line printed is
JSON: the spans made, with their ``TRACEID-SPANID`` ids, and whether the export succeeded.
"""

from __future__ import annotations

import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

QUESTION = "How often does the main conveyor need lubrication?"
STREAMED = "What is the lockout procedure before maintenance?"


def main() -> None:
    conv, upstream, endpoint, key, protocol = sys.argv[1:6]
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "line-copilot", "deployment.plant": "Plant_C"})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    if conv == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor
    elif conv == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    else:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    OpenAIInstrumentor().instrument(tracer_provider=provider)

    import openai

    client = openai.OpenAI(base_url=upstream + "/v1", api_key="none", max_retries=0)

    def calls() -> None:
        client.chat.completions.create(
            model="sop-assistant",
            messages=[
                {"role": "system", "content": "Answer from the plant's SOPs."},
                {"role": "user", "content": QUESTION},
            ],
        )
        stream = client.chat.completions.create(
            model="sop-assistant",
            messages=[{"role": "user", "content": STREAMED}],
            stream=True,
            stream_options={"include_usage": True},
        )
        for _ in stream:
            pass

    if conv == "openinference":
        from openinference.instrumentation import using_attributes

        with using_attributes(session_id="shift-7", user_id="op-42", metadata={"line": "L3"}):
            calls()
    else:
        calls()
    spans = memory.get_finished_spans()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(
            endpoint=endpoint, insecure=True, headers=(("x-api-key", key),), timeout=20
        )
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        exporter = HttpExporter(
            endpoint=endpoint + "/v1/traces", headers={"Authorization": f"Bearer {key}"}, timeout=20
        )
    result = exporter.export(spans)
    exporter.shutdown()
    out = {
        "exported": result == SpanExportResult.SUCCESS,
        "spans": [
            {
                "request_id": f"{s.context.trace_id:032x}-{s.context.span_id:016x}",
                "name": s.name,
                "attributes": sorted(s.attributes or {}),
            }
            for s in spans
        ],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
