"""ModelWarden's errors: one root, translated to an exit code or an HTTP status only at the edge.

Hierarchy::

    WardenError                 root; exit 2, HTTP 400 unless a subclass says otherwise
    ├── InputError              bad input from the user: a file, a flag, a record (exit 2, HTTP 400)
    │   ├── RecordError         one record failed validation; names the field and the reason
    │   └── DimensionError      embeddings whose dimensions do not match
    ├── NotFoundError           a thing that was asked for does not exist (exit 2, HTTP 404)
    ├── ConflictError           a valid request that the current state forbids (exit 2, HTTP 409)
    │   └── LeaseHeld           another instance holds the controller lease (exit 1, HTTP 409)
    ├── DependencyError         an optional dependency is missing; names the install command
    └── StoreError              the data directory or a store cannot be read or written (exit 2, HTTP 500)
        ├── StateUnavailable    the state database cannot be reached (exit 2, HTTP 503)
        └── StorageFull         the disk under the data directory is full (exit 2, HTTP 507)

A check that *fails* (drift detected, a gate failed) is not an error: commands return exit code 1
for it through :data:`EXIT_CHECK_FAILED`.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


class WardenError(Exception):
    """Root of every error ModelWarden raises on purpose."""

    exit_code: int = EXIT_BAD_INPUT
    http_status: int = 400
    code: str = "error"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The one JSON error shape used by the CLI (``--format json``) and the HTTP API."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.details:
            out["details"] = self.details
        return {"error": out}


class InputError(WardenError):
    code = "bad_input"


class RecordError(InputError):
    """A record failed validation. ``field`` names the field, ``reason`` says why."""

    code = "invalid_record"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", field=field)
        self.reason = reason


class DimensionError(InputError):
    code = "dimension_mismatch"


class MalformedBody(InputError):
    """A body that is not the document it claims to be: empty, not UTF-8, not valid JSON or
    protobuf."""

    code = "malformed_json"


class NotFoundError(WardenError):
    code = "not_found"
    http_status = 404


class ConflictError(WardenError):
    code = "conflict"
    http_status = 409


class LeaseHeld(ConflictError):
    """Singleton work (the rollout controller) is running on another instance right now. Not bad
    input: the command could not act this time, so it exits 1 like a failed check."""

    code = "lease_held"
    exit_code = EXIT_CHECK_FAILED


class DependencyError(WardenError):
    code = "missing_dependency"
    http_status = 500

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'modelwarden[{extra}]'",
            package=package,
            extra=extra,
        )


class StoreError(WardenError):
    code = "store_error"
    http_status = 500


class StateUnavailable(StoreError):
    """The state database cannot be reached; the message names it with the password masked."""

    code = "state_unavailable"
    http_status = 503


class StorageFull(StoreError):
    """The disk under the data directory has no room left; nothing of the write was kept."""

    code = "insufficient_storage"
    http_status = 507
