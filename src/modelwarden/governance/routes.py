"""The gateway's routes: which model version serves which request, kept in the state store.

One route table is live at a time: a stable version, an optional canary (a weight 0-100 and an
optional list of plants), and an optional shadow (a sample rate 0-1). Every change writes a new
row with the next ``version``; old rows are the history, so a rollback is just another change.

Sticky assignment: a user's bucket is a hash of the canary version and the user id, a number in
[0, 100) with two decimals; the user is on the canary iff the bucket is below the weight. Growing
the weight therefore only ever adds users, and each canary version draws its own users, so the
same people do not carry every canary. Requests without a user id are served by the stable
version: stickiness needs an identity, and a user flipping between versions would make their
feedback meaningless.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import insert, select

from modelwarden.errors import ConflictError, InputError
from modelwarden.records import MAX_ID_CHARS
from modelwarden.store.state import UNREACHABLE, StateStore, unavailable
from modelwarden.store.tables import gateway_routes, model_versions

log = logging.getLogger("modelwarden.gateway")

RouteName = Literal["stable", "canary", "shadow"]
Plant = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]


class Upstream(BaseModel):
    """A model version and the base URL of the OpenAI-compatible server that serves it."""

    version: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    url: str = Field(min_length=1, max_length=2000, examples=["http://127.0.0.1:9101"])

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if not v.startswith(("http://", "https://")) or len(v.split("://", 1)[1]) == 0:
            raise ValueError("must be an http:// or https:// URL")
        return v

    @property
    def api_base(self) -> str:
        """The URL that ``/chat/completions`` is appended to (``.../v1``)."""
        return self.url if self.url.endswith("/v1") else self.url + "/v1"

    @classmethod
    def parse(cls, text: str, field: str) -> Upstream:
        """``VERSION=URL`` as the CLI takes it."""
        version, sep, url = text.partition("=")
        if not sep or not version or not url:
            raise InputError(
                f"{text!r} is not VERSION=URL (e.g. sop-assistant-v1.1=http://127.0.0.1:9101)",
                field=field,
            )
        try:
            return cls(version=version.strip(), url=url.strip())
        except ValueError as exc:
            raise InputError(
                f"{text!r}: the URL must start with http:// or https://", field=field
            ) from exc


class RouteSpec(BaseModel):
    """A whole route table as a client states it; what is left out is off."""

    stable: Upstream
    canary: Upstream | None = None
    canary_weight: float = Field(default=0.0, ge=0, le=100, allow_inf_nan=False)
    canary_plants: list[Plant] = Field(
        default_factory=list, description="Plants the canary serves; empty means every plant."
    )
    shadow: Upstream | None = None
    shadow_sample: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    note: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _consistent(self) -> RouteSpec:
        if self.canary is None and (self.canary_weight or self.canary_plants):
            raise ValueError("canary_weight and canary_plants need a canary")
        if self.shadow is None and self.shadow_sample:
            raise ValueError("shadow_sample needs a shadow")
        if self.canary is not None and self.canary.version == self.stable.version:
            raise ValueError("the canary must be a different version from the stable one")
        if self.shadow is not None and self.shadow.version == self.stable.version:
            raise ValueError("the shadow must be a different version from the stable one")
        return self


class PutRoutes(RouteSpec):
    """The body of ``PUT /v1/routes``: a route table, optionally tied to the version it replaces."""

    if_version: int | None = Field(
        default=None,
        description="Refuse the change (409) unless the live table has this version.",
    )


class RouteTable(RouteSpec):
    """A stored route table: the spec, its version and when and by whom it was set."""

    version: int
    created_at: datetime
    created_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class Decision:
    route: RouteName
    upstream: Upstream
    bucket: float | None


def bucket(user: str, salt: str) -> float:
    """The user's sticky bucket in [0, 100), two decimals, from a SHA-256 of salt and user."""
    digest = hashlib.sha256(f"{salt}\x1f{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


def assign(table: RouteTable, user: str | None, plant: str | None) -> Decision:
    """Stable or canary for one request; pure, so the same inputs always give the same answer."""
    canary = table.canary
    if canary is None or not table.canary_weight or not user:
        return Decision("stable", table.stable, None)
    if table.canary_plants and plant not in table.canary_plants:
        return Decision("stable", table.stable, None)
    b = bucket(user, canary.version)
    if b < table.canary_weight:
        return Decision("canary", canary, b)
    return Decision("stable", table.stable, b)


# ---- the state store -------------------------------------------------------------------------
def _to_table(r: Any) -> RouteTable:
    return RouteTable(
        version=r.version,
        created_at=r.created_at,
        created_by=r.created_by,
        stable=Upstream(version=r.stable_version, url=r.stable_url),
        canary=(Upstream(version=r.canary_version, url=r.canary_url) if r.canary_version else None),
        canary_weight=r.canary_weight,
        canary_plants=json.loads(r.canary_plants or "[]"),
        shadow=(Upstream(version=r.shadow_version, url=r.shadow_url) if r.shadow_version else None),
        shadow_sample=r.shadow_sample,
        note=r.note,
    )


def current_routes(state: StateStore) -> RouteTable | None:
    with state.engine.connect() as con:
        row = con.execute(
            select(gateway_routes).order_by(gateway_routes.c.version.desc()).limit(1)
        ).one_or_none()
    return _to_table(row) if row is not None else None


def route_history(state: StateStore, limit: int = 50) -> list[RouteTable]:
    with state.engine.connect() as con:
        rows = con.execute(
            select(gateway_routes).order_by(gateway_routes.c.version.desc()).limit(limit)
        ).all()
    return [_to_table(r) for r in rows]


# ---- quarantine: a quarantined version is never written into a route table -----------------
def quarantined_versions(state: StateStore) -> frozenset[str]:
    with state.engine.connect() as con:
        return frozenset(
            con.execute(
                select(model_versions.c.version).where(model_versions.c.status == "quarantined")
            ).scalars()
        )


def versions_of(spec: RouteSpec) -> list[str]:
    out = [spec.stable.version]
    if spec.canary is not None:
        out.append(spec.canary.version)
    if spec.shadow is not None:
        out.append(spec.shadow.version)
    return out


def refuse_quarantined(spec: RouteSpec, quarantined: frozenset[str] | set[str]) -> None:
    """Raise :class:`ConflictError` if the route table would send traffic to a quarantined version."""
    bad = [v for v in versions_of(spec) if v in quarantined]
    if bad:
        raise ConflictError(
            f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} quarantined and cannot be "
            "routed or shadowed until released (modelwarden registry request-release / approve)",
            field="routes",
            quarantined=bad,
        )


def set_routes(
    state: StateStore,
    spec: RouteSpec,
    created_by: str | None = None,
    if_version: int | None = None,
) -> RouteTable:
    """Make ``spec`` the live table as a new version; the old one stays in the history.

    A version quarantined under the rollback SOP is refused (409) until it is approved again.
    Writers go through :func:`modelwarden.governance.registry.set_live_routes`, which also audits
    the change and the refusal; the gateway reads through ``GuardedRoutes``, which drops a
    quarantined canary or shadow whatever an older table says.
    """
    refuse_quarantined(spec, quarantined_versions(state))
    with state.engine.begin() as con:
        if if_version is not None:
            live = con.execute(
                select(gateway_routes.c.version).order_by(gateway_routes.c.version.desc()).limit(1)
            ).scalar_one_or_none()
            if live != if_version:
                raise ConflictError(
                    f"the live route table is version {live}, not {if_version}; "
                    "read it again and restate the change",
                    field="if_version",
                    live_version=live,
                )
        res = con.execute(
            insert(gateway_routes).values(
                created_at=datetime.now(UTC),
                created_by=created_by,
                stable_version=spec.stable.version,
                stable_url=spec.stable.url,
                canary_version=spec.canary.version if spec.canary else None,
                canary_url=spec.canary.url if spec.canary else None,
                canary_weight=spec.canary_weight,
                canary_plants=json.dumps(spec.canary_plants),
                shadow_version=spec.shadow.version if spec.shadow else None,
                shadow_url=spec.shadow.url if spec.shadow else None,
                shadow_sample=spec.shadow_sample,
                note=spec.note,
            )
        )
        assert res.inserted_primary_key is not None
        version = res.inserted_primary_key[0]
        row = con.execute(select(gateway_routes).where(gateway_routes.c.version == version)).one()
    return _to_table(row)


class RouteSource(Protocol):
    """Where the gateway reads the live route table from (a cache, or a guard around one)."""

    def get(self) -> RouteTable | None: ...

    def invalidate(self) -> None: ...


class RouteCache:
    """The live route table, re-read at most every ``ttl`` seconds.

    A change made by another process (``modelwarden routes set``) is seen within ``ttl``; one
    made through this server's API invalidates the cache at once.
    """

    def __init__(self, state: StateStore, ttl: float = 0.5) -> None:
        self.state = state
        self.ttl = ttl
        self._value: RouteTable | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def get(self) -> RouteTable | None:
        now = time.monotonic()
        if now < self._expires:
            return self._value
        with self._lock:
            if now < self._expires:
                return self._value
            try:
                self._value = current_routes(self.state)
            except UNREACHABLE as exc:
                if self._value is None:
                    raise unavailable(self.state.engine, exc) from exc
                # The gateway keeps serving the last table it read while the state is away.
                log.warning("state store unreachable; serving the last route table: %s", exc)
            self._expires = time.monotonic() + self.ttl
            return self._value

    def invalidate(self) -> None:
        self._expires = 0.0


__all__ = [
    "Decision",
    "PutRoutes",
    "RouteCache",
    "RouteSource",
    "RouteSpec",
    "RouteTable",
    "Upstream",
    "assign",
    "bucket",
    "current_routes",
    "route_history",
    "set_routes",
]
