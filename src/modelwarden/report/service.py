"""Report service: the weekly pack built, rendered and written; what the CLI, the HTTP API and the
scheduler call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelwarden.errors import InputError
from modelwarden.governance import registry
from modelwarden.report import delivery
from modelwarden.report.files import trend_rows, write_report
from modelwarden.report.weekly import build_weekly_report, render_markdown
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

__all__ = [
    "build_weekly_report",
    "render_markdown",
    "schedule_status",
    "send_weekly",
    "trend_rows",
    "weekly_report",
    "write_report",
    "write_weekly",
]

schedule_status = delivery.schedule_status


def write_weekly(
    settings: Settings,
    week: str | None = None,
    out: Path | None = None,
    fmt: str = "md",
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Path:
    """Build the week's report (default: the latest complete week) and write it; the path."""
    rep = build_weekly_report(settings, week, progress=progress, on_total=on_total)
    return write_report(rep, out, settings, fmt)


def weekly_report(settings: Settings, week: str | None = None, fmt: str = "json") -> Any:
    """The week's report as a JSON-ready dict (``json``) or its Markdown text (``md``)."""
    if fmt not in ("json", "md"):
        raise InputError("format must be json or md", field="format")
    rep = build_weekly_report(settings, week)
    return render_markdown(rep) if fmt == "md" else rep.to_dict()


def send_weekly(
    settings: Settings,
    state: StateStore,
    week: str | None = None,
    *,
    force: bool = False,
    key: str | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> delivery.SendResult:
    """Build the weekly pack now, queue it to the targets and deliver it once.

    The actor is the key's (``key``) or the local operator's. A week already sent is refused
    unless ``force``. The result's ``deliveries`` say what each target answered.
    """
    actor = registry.key_actor(registry.identify(state, key)) if key else registry.cli_actor()
    res = delivery.send_week(
        settings,
        week,
        state=state,
        force=force,
        actor=actor,
        progress=progress,
        on_total=on_total,
    )
    res.deliveries = delivery.deliver(state, res.event_id)
    return res
