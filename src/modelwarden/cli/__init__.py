"""The ``modelwarden`` command. Each module below registers its commands on the shared app."""

from __future__ import annotations

import sys

# Command modules: importing one registers its commands.
from modelwarden.cli import (
    core,  # noqa: F401
    db,  # noqa: F401
    drift,  # noqa: F401
    evals,  # noqa: F401
    ops,  # noqa: F401
    review,  # noqa: F401
    serve,  # noqa: F401
)
from modelwarden.cli.app import app


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        # Typer/click report usage errors with exit code 2 already; keep the code as it is.
        raise exc
    except BrokenPipeError:  # `modelwarden kpis | head`
        sys.stderr.close()


__all__ = ["app", "main"]
