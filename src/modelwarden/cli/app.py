"""The ``modelwarden`` Typer app, its global options and the output helpers every command uses.

Commands live in sibling modules (one per area) and register themselves on :data:`app`; they stay
thin: parse arguments, call a library function, print a table for people or JSON for programs.
Exit codes: 0 ok, 1 a check failed (an alert, a failed gate), 2 bad input or usage.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from modelwarden import __version__
from modelwarden.errors import EXIT_BAD_INPUT, WardenError

if TYPE_CHECKING:
    from rich.progress import Progress

    from modelwarden.settings import Settings
    from modelwarden.store.state import StateStore

app = typer.Typer(
    name="modelwarden",
    help="Keep fine-tuned LLM assistants safe in production: logs, KPIs, drift, evaluation, "
    "safe rollout and the rollback SOP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# When output goes to a file or a pipe there is no terminal width to respect; wide tables stay whole.
console = Console(width=None if sys.stdout.isatty() else 240)
err_console = Console(stderr=True)


class Format(StrEnum):
    table = "table"
    json = "json"


class TabularFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


FORMAT_OPTION = typer.Option(
    Format.table, "--format", "-f", help="table for people, json for programs"
)


class AnalyticsEngine(StrEnum):
    duckdb = "duckdb"
    spark = "spark"


class State:
    """The global options; :class:`Settings` is built on first use (pydantic is not cheap)."""

    def __init__(self) -> None:
        self.data: Path | None = None
        self.embedder: str | None = None
        self.state_url: str | None = None
        self.engine: str | None = None
        self.settings: Settings | None = None


state = State()


def _print_version(value: bool) -> None:
    if value:
        print(f"modelwarden {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    data: Path = typer.Option(
        None,
        "--data",
        envvar="MODELWARDEN_DATA",
        help="Data directory (default ./warden-data).",
        show_default=False,
    ),
    embedder: str = typer.Option(
        None,
        "--embedder",
        envvar="MODELWARDEN_EMBEDDER",
        help="Embedder: minilm (default, all-MiniLM-L6-v2) or hashing (fast, for tests).",
    ),
    state_url: str = typer.Option(
        None,
        "--state-url",
        envvar="MODELWARDEN_STATE_URL",
        help="State database URL (default sqlite:///DATA/state.db; or postgresql+psycopg://...).",
        show_default=False,
    ),
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
    engine: AnalyticsEngine = typer.Option(
        None,
        "--engine",
        envvar="MODELWARDEN_ANALYTICS_ENGINE",
        help="Engine of KPIs, drift and reports over the log: duckdb (default, embedded) or "
        "spark (PySpark, the spark extra; master from MODELWARDEN_SPARK_MASTER, default local[2]).",
        show_default=False,
    ),
) -> None:
    state.data, state.embedder, state.state_url, state.settings = data, embedder, state_url, None
    state.engine = engine.value if engine else None


def settings() -> Settings:
    if state.settings is None:
        # imported here: keeps --help fast
        from modelwarden.settings import Settings

        state.settings = Settings.from_env(
            state.data,
            embedder=state.embedder,
            state_url=state.state_url,
            analytics_engine=state.engine,
        )
    return state.settings


def state_store() -> StateStore:
    """The state database of the data directory (versions, routes, runs, queues, audit…)."""
    # imported here: keeps --help fast
    from modelwarden.store.state import StateStore

    return StateStore.of(settings())


F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn a :class:`WardenError` into a clear message and its exit code, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except WardenError as exc:
            fmt = kwargs.get("format")
            if fmt is not None and getattr(fmt, "value", fmt) == "json":
                print(json.dumps(exc.to_dict()), file=sys.stderr)
            else:
                where = f" ({exc.field})" if exc.field and exc.field not in exc.message else ""
                err_console.print(f"[bold red]error[/]{where}: {exc.message}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if v != v:
            return "—"
        return f"{v:,.2f}" if abs(v) >= 1 or v == 0 else f"{v:.4f}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def print_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    if not rows:
        console.print(f"{title + ': ' if title else ''}no rows")
        return
    cols = list(columns or rows[0].keys())
    table = Table(title=title, show_lines=False)
    for c in cols:
        numeric = any(
            isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) for r in rows
        )
        table.add_column((headers or {}).get(c, c), justify="right" if numeric else "left")
    for r in rows:
        table.add_row(*[_cell(r.get(c)) for c in cols])
    console.print(table)


def print_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    import csv

    w = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)


class Bar:
    """A rich progress bar whose total can be set once it is known."""

    def __init__(self, progress: Progress, label: str) -> None:
        self.progress = progress
        self.task = progress.add_task(label, total=None)

    def total(self, n: int) -> None:
        self.progress.update(self.task, total=n, completed=0)

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)


@contextmanager
def progress_bar(label: str, total: int | None = None, enabled: bool = True) -> Iterator[Bar]:
    """Progress on stderr for long work; ``enabled=False`` (JSON output) shows nothing."""
    # imported here: keeps --help fast
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not enabled,
    )
    with progress:
        bar = Bar(progress, label)
        if total is not None:
            bar.total(total)
        yield bar


def fail_usage(message: str, field: str | None = None) -> typer.Exit:
    err_console.print(f"[bold red]error[/]{f' ({field})' if field else ''}: {message}")
    return typer.Exit(EXIT_BAD_INPUT)


KEY_HELP = "API key (modelwarden keys create); also MODELWARDEN_KEY."


def key_option(required: bool = False) -> Any:
    """``--key``: names the actor of a change (and its role, where one is required)."""
    return typer.Option(
        None,
        "--key",
        envvar="MODELWARDEN_KEY",
        help=KEY_HELP + (" Required." if required else " Names the actor."),
        show_default=False,
    )


def route_rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    """A route table as rows: stable, canary (share and plants) and shadow."""
    rows = [
        {
            "route": "stable",
            "version": table["stable"]["version"],
            "url": table["stable"]["url"],
            "share": "the rest" if table.get("canary") else "all traffic",
        }
    ]
    if table.get("canary"):
        plants = ", ".join(table["canary_plants"]) or "every plant"
        rows.append(
            {
                "route": "canary",
                "version": table["canary"]["version"],
                "url": table["canary"]["url"],
                "share": f"{table['canary_weight']:g}% of users ({plants})",
            }
        )
    if table.get("shadow"):
        rows.append(
            {
                "route": "shadow",
                "version": table["shadow"]["version"],
                "url": table["shadow"]["url"],
                "share": f"copy of {table['shadow_sample']:.0%} of requests",
            }
        )
    return rows
