"""Simulator service: generate plant traffic and write it as JSONL files.

Storing the traffic is the ingest service's job (``ingest_records(settings, batches(data), …)``);
the simulator itself stays free of the log store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelwarden.errors import InputError
from modelwarden.simulate.live import run_realtime
from modelwarden.simulate.traffic import SimulatedData, default_end, parse_scenarios, simulate

__all__ = [
    "SimulatedData",
    "batches",
    "default_end",
    "parse_scenarios",
    "send_live",
    "sibling",
    "simulate",
    "summary",
    "write_traffic",
]


def sibling(path: Path, part: str) -> Path:
    """``logs.jsonl`` → ``logs.feedback.jsonl``."""
    name = path.name
    stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else path.stem
    return path.with_name(f"{stem}.{part}.jsonl")


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_traffic(out: Path, data: SimulatedData) -> list[str]:
    """Requests to ``out``, feedback and escalations beside it; the three paths written."""
    files = [out, sibling(out, "feedback"), sibling(out, "escalations")]
    for path, rows in zip(files, (data.requests, data.feedback, data.escalations), strict=True):
        _write_jsonl(path, rows)
    return [str(p) for p in files]


def batches(data: SimulatedData) -> list[tuple[str, list[dict[str, Any]]]]:
    """The traffic as ``(kind, rows)`` in the order it must be stored (requests first)."""
    return [
        ("requests", data.requests),
        ("feedback", data.feedback),
        ("escalations", data.escalations),
    ]


def summary(data: SimulatedData) -> dict[str, Any]:
    return {
        "scenarios": list(data.scenarios),
        "start": data.start,
        "end": data.end,
        "requests": len(data.requests),
        "feedback": len(data.feedback),
        "escalations": len(data.escalations),
    }


def send_live(
    url: str, rate: float, duration: float, api_key: str | None = None, seed: int = 0
) -> dict[str, Any]:
    """Send plant traffic to a running gateway for ``duration`` seconds at ``rate`` a second.

    The outcome: requests sent, answered (``ok``) and failed, feedback events sent, seconds,
    counts ``by`` plant and version, and the first five distinct errors.
    """
    if not url.startswith(("http://", "https://")):
        raise InputError("--to-gateway must be an http:// or https:// URL", field="to_gateway")
    res = run_realtime(url, rate, duration, api_key=api_key, seed=seed)
    errors = sorted({a.error or f"HTTP {a.status}" for a in res.answers if a.status != 200})
    return {
        "sent": len(res.answers),
        "ok": res.ok,
        "failed": res.failed,
        "feedback": res.feedback_sent,
        "seconds": round(res.seconds, 2),
        "by": res.summary_rows(),
        "errors": errors[:5],
    }
