"""Options and rendering helpers the operations commands share: ``--policy``, ``--now``,
``--reason``, ``--notify-wait``, time cells, and "JSON for programs, a table for people"."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from modelwarden.cli.app import Format, print_json

if TYPE_CHECKING:
    from modelwarden.store.state import StateStore

POLICY_OPTION = typer.Option(
    None,
    "--policy",
    help="Policy YAML; default: the policy in force (policy set, else "
    "DATA/policy.yaml, else the built-in SOP-MLOPS-003).",
)

NOW_OPTION = typer.Option(
    None,
    "--now",
    help="Act as if it were this time (ISO; replays and drills). Default: now.",
    show_default=False,
)

SINCE_OPTION = typer.Option(None, "--from", help="ISO date or time; default 14 days before --to.")
UNTIL_OPTION = typer.Option(None, "--to", help="ISO date or time; default the last request.")


def reason_option(required: bool = False, help: str | None = None) -> Any:
    """``--reason``: why (it goes into the audit log); optional unless ``required``."""
    return typer.Option(... if required else "", "--reason", help=help)


def notify_wait_option(help: str) -> Any:
    """``--notify-wait``: seconds to wait for notifications to be delivered."""
    return typer.Option(10.0, "--notify-wait", help=help)


def when(v: Any) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS`` (datetime or ISO text), ``—`` for none."""
    if isinstance(v, datetime):
        return f"{v:%Y-%m-%d %H:%M:%S}"
    if isinstance(v, str) and len(v) >= 19:
        return v[:19].replace("T", " ")
    return "—" if v is None else str(v)


def short(v: Any, limit: int = 120) -> str:
    """``v`` as text of at most ``limit`` characters (an ellipsis marks a cut)."""
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_time_option(value: str | None, field: str) -> datetime | None:
    """An ISO date or time option, or None when it was not given."""
    if not value:
        return None
    # imported here: keeps --help fast
    from modelwarden.windows import parse_time

    return parse_time(value, field)


def output(data: Any, format: Format, table: Callable[[], None]) -> None:
    """``data`` as JSON for ``--format json``; otherwise ``table()`` prints it for people."""
    if format == Format.json:
        print_json(data)
    else:
        table()


def actor(state: StateStore, key: str | None) -> str:
    """Who acts: the key's name when ``--key`` is given, else the local user's."""
    # imported here: keeps --help fast
    from modelwarden.governance.service import actor_of_key

    return actor_of_key(state, key)


def write_text(out: Path, text: str) -> None:
    """Write ``text`` to ``out`` (its directory made if needed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


__all__ = [
    "NOW_OPTION",
    "POLICY_OPTION",
    "SINCE_OPTION",
    "UNTIL_OPTION",
    "actor",
    "notify_wait_option",
    "output",
    "parse_time_option",
    "reason_option",
    "short",
    "when",
    "write_text",
]
