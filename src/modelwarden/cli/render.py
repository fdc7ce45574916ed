"""Output and option helpers shared by the command modules: JSON or a table, staged progress.

Commands stay thin with these: one service call, then :func:`emit` (JSON for programs, a table
or a few lines for people). Option objects here are the ones several commands declare alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

from modelwarden.cli.app import Bar, Format, print_json, progress_bar


def emit(data: Any, format: Format, people: Callable[[], None]) -> None:
    """``data`` as JSON with ``--format json``, else what ``people`` prints."""
    if format == Format.json:
        print_json(data)
    else:
        people()


class StageBar:
    """A progress bar a service drives in stages: ``stage(label)`` starts a new one."""

    def __init__(self, bar: Bar) -> None:
        self.bar = bar

    def stage(self, label: str) -> None:
        self.bar.progress.update(self.bar.task, description=label, total=None, completed=0)

    def total(self, n: int) -> None:
        self.bar.total(n)

    def advance(self, n: int) -> None:
        self.bar.advance(n)


@contextmanager
def stage_bar(label: str, enabled: bool = True) -> Iterator[StageBar]:
    """A progress bar (on stderr, transient) whose label the service may change per stage."""
    with progress_bar(label, enabled=enabled) as bar:
        yield StageBar(bar)


def since_option(help: str) -> Any:
    return typer.Option(None, "--since", help=help)


def until_option(help: str) -> Any:
    return typer.Option(None, "--until", help=help)


# `baseline pin` and `baseline unpin` take the same reservoir.
RESERVOIR_KIND_OPTION = typer.Option("prompt", "--kind")
RESERVOIR_PLANT_OPTION = typer.Option(None, "--plant")
