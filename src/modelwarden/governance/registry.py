"""Model versions and their lifecycle, release approvals and the quarantine that the SOP enforces.

Lifecycle (:data:`TRANSITIONS` is the whole table)::

    staging → shadow → canary → stable → retired
    staging → canary                      (shadowing is optional)
    shadow → staging, canary → staging    (a shadow stopped, a rollout aborted)
    staging | shadow | canary | stable → quarantined
    quarantined → staging                 only by an approved release (below)
    quarantined | staging | shadow → retired;  retired → staging

- ``staging`` → ``stable`` is allowed only while no version is stable (the first version of an
  installation); afterwards a version reaches stable through a canary rollout.
- Promoting a canary to stable retires the version that was stable.
- A ``quarantined`` version cannot be routed (stable or canary), shadowed or promoted. It returns
  to ``staging`` only when (1) a key asked for its release (``request-release``), (2) an
  evaluation run of the version made after the quarantine passes a gate against a run of the
  stable version on the same golden set (:func:`modelwarden.evals.store.compare_stored`), and
  (3) a key with the ``approver`` role, not the one that asked, approves with that run as
  evidence. SOP-MLOPS-003: "re-validated in a staging environment, and the fix is approved by
  the AI Governance Board".

Every transition, route change, request and approval is appended to the audit log
(:mod:`modelwarden.governance.audit`) in the same transaction as the change it records.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    insert,
    select,
    update,
)

from modelwarden.errors import ConflictError, InputError, NotFoundError
from modelwarden.evals.store import compare_stored, get_run, latest_run
from modelwarden.governance import audit
from modelwarden.governance.keys import ApiKey, AuthError, ForbiddenError, KeyRing
from modelwarden.governance.routes import (
    RouteCache,
    RouteSpec,
    RouteTable,
    Upstream,
    current_routes,
    quarantined_versions,
    refuse_quarantined,
    set_routes,
    versions_of,
)
from modelwarden.store.state import UNREACHABLE, StateStore
from modelwarden.store.tables import as_utc, model_versions, release_requests, version_evidence

STATUSES: tuple[str, ...] = ("staging", "shadow", "canary", "stable", "quarantined", "retired")
TRANSITIONS: dict[str, frozenset[str]] = {
    "staging": frozenset({"shadow", "canary", "stable", "quarantined", "retired"}),
    "shadow": frozenset({"staging", "canary", "quarantined", "retired"}),
    "canary": frozenset({"stable", "staging", "quarantined"}),
    "stable": frozenset({"retired", "quarantined"}),
    "quarantined": frozenset({"staging", "retired"}),
    "retired": frozenset({"staging"}),
}
APPROVER_ROLE = "approver"


# ---- identities ---------------------------------------------------------------------------------
def cli_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"


def key_actor(key: ApiKey) -> str:
    return f"key {key.id} ({key.name or key.role})"


def identify(state: StateStore, secret: str | None, field_name: str = "key") -> ApiKey:
    """The API key behind a secret, or an error that says how to get one."""
    if not secret:
        raise InputError(
            "this needs an API key: --key KEY or MODELWARDEN_KEY "
            "(create one with: modelwarden keys create --role ROLE)",
            field=field_name,
        )
    key = KeyRing(state, ttl=0).lookup(secret.strip())
    if key is None:
        raise AuthError("unknown or revoked API key")
    return key


# ---- reading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionInfo:
    version: str
    endpoint: str
    status: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    quarantined_at: datetime | None = None
    quarantine_reason: str | None = None
    notes: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k in ("created_at", "updated_at", "quarantined_at"):
            out[k] = out[k].isoformat() if out[k] else None
        return out


def _info(r: Any) -> VersionInfo:
    return VersionInfo(
        version=r.version,
        endpoint=r.endpoint,
        status=r.status,
        created_at=r.created_at,
        created_by=r.created_by,
        updated_at=r.updated_at,
        quarantined_at=r.quarantined_at,
        quarantine_reason=r.quarantine_reason,
        notes=r.notes,
    )


def _get(con: Connection, version: str) -> VersionInfo | None:
    row = con.execute(
        select(model_versions).where(model_versions.c.version == version)
    ).one_or_none()
    return _info(row) if row is not None else None


def _require(con: Connection, version: str) -> VersionInfo:
    info = _get(con, version)
    if info is None:
        raise NotFoundError(
            f"{version} is not registered; register it with: modelwarden registry add "
            f"{version} --endpoint URL",
            field="version",
        )
    return info


def find_in(con: Connection, version: str) -> VersionInfo | None:
    return _get(con, version)


def get_in(con: Connection, version: str) -> VersionInfo:
    """A registered version, read inside the caller's transaction."""
    return _require(con, version)


def get(state: StateStore, version: str) -> VersionInfo:
    with state.engine.connect() as con:
        return _require(con, version)


def find(state: StateStore, version: str) -> VersionInfo | None:
    with state.engine.connect() as con:
        return _get(con, version)


def list_versions(state: StateStore, status: str | None = None) -> list[VersionInfo]:
    q = select(model_versions).order_by(model_versions.c.created_at, model_versions.c.version)
    if status:
        q = q.where(model_versions.c.status == status)
    with state.engine.connect() as con:
        return [_info(r) for r in con.execute(q)]


def stable_version(state: StateStore) -> VersionInfo | None:
    found = list_versions(state, "stable")
    return found[0] if found else None


def is_quarantined(state: StateStore, version: str) -> bool:
    return version in quarantined_versions(state)


# ---- writing --------------------------------------------------------------------------------------
@contextmanager
def refusals_audited(
    state: StateStore, actor: str, action: str, subject: str, evidence: Any = None
) -> Iterator[None]:
    """Record a refused change in the audit log (in a transaction of its own, since the refused
    one is rolled back), then let the error reach the caller."""
    try:
        yield
    except (ConflictError, ForbiddenError, InputError, NotFoundError) as exc:
        audit.record(
            state,
            actor,
            action,
            subject,
            exc.message,
            {"error": exc.code, "field": exc.field, **(evidence or {})},
        )
        raise


def _endpoint(url: str) -> str:
    try:
        return Upstream(version="x", url=url).url
    except ValueError:
        raise InputError(f"{url!r} is not an http:// or https:// URL", field="endpoint") from None


def add(
    state: StateStore,
    version: str,
    endpoint: str,
    actor: str,
    *,
    notes: str | None = None,
    status: str = "staging",
) -> VersionInfo:
    """Register a version in staging; or as ``stable`` (and routed) when no version is stable yet,
    which is how an installation's first, already serving version is registered."""
    if not version or len(version) > 200 or not version.isprintable():
        raise InputError("a version is 1-200 printable characters", field="version")
    if status not in ("staging", "stable"):
        raise InputError("a new version starts in staging (or stable, if none is)", field="status")
    url = _endpoint(endpoint)
    now = datetime.now(UTC)
    with audit.transaction(state) as con:
        if _get(con, version) is not None:
            raise ConflictError(f"{version} is registered already", field="version")
        if status == "stable":
            _no_stable(con)
        con.execute(
            insert(model_versions).values(
                version=version,
                endpoint=url,
                status=status,
                created_at=now,
                created_by=actor,
                updated_at=now,
                notes=notes,
            )
        )
        audit.append(
            con,
            actor,
            "registry.add",
            version,
            notes or "",
            {"endpoint": url, "status": status},
            at=now,
        )
        info = _require(con, version)
    if status == "stable":
        route_stable(state, info, actor, f"{version} registered as stable")
    return info


def set_endpoint(
    state: StateStore, version: str, endpoint: str, actor: str, reason: str = ""
) -> VersionInfo:
    url = _endpoint(endpoint)
    with audit.transaction(state) as con:
        info = _require(con, version)
        if info.status in ("canary", "stable", "shadow"):
            raise ConflictError(
                f"{version} is {info.status}: its endpoint changes with the routes, not here "
                "(stop its shadow or canary first)",
                field="version",
            )
        con.execute(
            update(model_versions)
            .where(model_versions.c.version == version)
            .values(endpoint=url, updated_at=datetime.now(UTC))
        )
        audit.append(
            con, actor, "registry.endpoint", version, reason, {"from": info.endpoint, "to": url}
        )
        return _require(con, version)


def _no_stable(con: Connection) -> None:
    live = (
        con.execute(select(model_versions.c.version).where(model_versions.c.status == "stable"))
        .scalars()
        .first()
    )
    if live is not None:
        raise ConflictError(
            f"{live} is stable; a new version reaches stable through a canary rollout "
            "(modelwarden rollout start VERSION)",
            field="to",
        )


def _quarantine_message(info: VersionInfo) -> str:
    return (
        f"{info.version} is quarantined ({info.quarantine_reason or 'no reason given'}); it "
        "cannot be routed, shadowed or promoted until an evaluation run on the golden set passes "
        f"its gate and an approver approves: modelwarden registry request-release {info.version} "
        f"--key KEY, then modelwarden registry approve {info.version} --eval-run RUN --key "
        "APPROVER_KEY"
    )


def transition_in(
    con: Connection,
    version: str,
    to: str,
    actor: str,
    reason: str = "",
    evidence: Any = None,
    *,
    released: bool = False,
    at: datetime | None = None,
) -> tuple[VersionInfo, VersionInfo]:
    """Move ``version`` to ``to`` inside the caller's transaction; returns (before, after)."""
    if to not in STATUSES:
        raise InputError(f"status must be one of {', '.join(STATUSES)}", field="to")
    info = _require(con, version)
    if info.status == "quarantined" and to != "retired" and not released:
        raise ConflictError(_quarantine_message(info), field="version", status=info.status)
    if to not in TRANSITIONS[info.status]:
        allowed = ", ".join(sorted(TRANSITIONS[info.status]))
        raise ConflictError(
            f"{version} is {info.status}; it can move to {allowed}, not to {to}",
            field="to",
            status=info.status,
        )
    if info.status == "staging" and to == "stable":
        _no_stable(con)
    now = at or datetime.now(UTC)
    values: dict[str, Any] = {"status": to, "updated_at": now}
    if to == "quarantined":
        values.update(quarantined_at=now, quarantine_reason=reason or "no reason given")
    elif info.status == "quarantined":
        # Released or retired: the quarantine is over; its record stays in the audit log.
        values.update(quarantine_reason=None)
    con.execute(update(model_versions).where(model_versions.c.version == version).values(**values))
    audit.append(
        con,
        actor,
        "registry.transition",
        version,
        reason,
        {"from": info.status, "to": to, **({"evidence": evidence} if evidence else {})},
        at=now,
    )
    return info, _require(con, version)


def transition(
    state: StateStore, version: str, to: str, actor: str, reason: str = "", evidence: Any = None
) -> VersionInfo:
    with (
        refusals_audited(state, actor, "registry.refused", version, {"to": to}),
        audit.transaction(state) as con,
    ):
        return transition_in(con, version, to, actor, reason, evidence)[1]


def promote(state: StateStore, version: str, to: str, actor: str, reason: str = "") -> VersionInfo:
    """Move a version forward (shadow, canary or stable). Promoting to stable routes it.

    Shadow and canary here change the registry only; ``shadow start`` and ``rollout start`` are
    what send traffic, and they promote as they go.
    """
    if to not in ("shadow", "canary", "stable"):
        raise InputError("promote --to shadow, canary or stable", field="to")
    with (
        refusals_audited(state, actor, "registry.refused", version, {"to": to}),
        audit.transaction(state) as con,
    ):
        before, after = transition_in(con, version, to, actor, reason)
        if to == "stable" and before.status == "canary":
            for old in (
                con.execute(
                    select(model_versions.c.version).where(
                        model_versions.c.status == "stable", model_versions.c.version != version
                    )
                )
                .scalars()
                .all()
            ):
                transition_in(con, old, "retired", actor, f"replaced by {version}")
    if to == "stable":
        route_stable(state, after, actor, reason or f"{version} promoted to stable")
    return after


def route_stable(state: StateStore, info: VersionInfo, actor: str, reason: str) -> None:
    live = current_routes(state)
    up = Upstream(version=info.version, url=info.endpoint)
    keep_shadow = (
        live is not None and live.shadow is not None and live.shadow.version != info.version
    )
    spec = RouteSpec(
        stable=up,
        shadow=live.shadow if keep_shadow and live else None,
        shadow_sample=live.shadow_sample if keep_shadow and live else 0.0,
        note=reason,
    )
    set_live_routes(state, spec, actor, reason)


def quarantine(
    state: StateStore, version: str, reason: str, actor: str, evidence: Any = None
) -> bool:
    """Quarantine ``version`` and take it out of the routes; False if it was quarantined already.

    The live stable version cannot be quarantined this way: traffic must go elsewhere first (a
    rollback does both).
    """
    live = current_routes(state)
    if live is not None and live.stable.version == version:
        raise ConflictError(
            f"{version} serves as the stable version; route traffic to another version first",
            field="version",
        )
    with audit.transaction(state) as con:
        info = _require(con, version)
        if info.status == "quarantined":
            return False
        transition_in(con, version, "quarantined", actor, reason, evidence)
    remove_from_routes(state, version, actor, f"{version} quarantined: {reason}")
    return True


def quarantine_in(
    con: Connection,
    version: str,
    endpoint: str | None,
    reason: str,
    actor: str,
    evidence: Any = None,
    at: datetime | None = None,
) -> bool:
    """Quarantine inside the caller's transaction, registering the version if it was not (a
    version routed by hand must still be held back); False if it was quarantined already."""
    info = _get(con, version)
    now = at or datetime.now(UTC)
    if info is None:
        con.execute(
            insert(model_versions).values(
                version=version,
                endpoint=endpoint or "http://unknown",
                status="quarantined",
                created_at=now,
                created_by=actor,
                updated_at=now,
                quarantined_at=now,
                quarantine_reason=reason,
                notes="registered by its quarantine",
            )
        )
        audit.append(
            con,
            actor,
            "registry.add",
            version,
            reason,
            {"endpoint": endpoint, "status": "quarantined"},
            at=now,
        )
        return True
    if info.status == "quarantined":
        return False
    transition_in(con, version, "quarantined", actor, reason, evidence, at=now)
    return True


def remove_from_routes(state: StateStore, version: str, actor: str, reason: str) -> bool:
    """Take ``version`` out of the canary and shadow slots of the live routes, if it is there."""
    live = current_routes(state)
    if live is None:
        return False
    in_canary = live.canary is not None and live.canary.version == version
    in_shadow = live.shadow is not None and live.shadow.version == version
    if not (in_canary or in_shadow):
        return False
    spec = RouteSpec(
        stable=live.stable,
        canary=None if in_canary else live.canary,
        canary_weight=0.0 if in_canary else live.canary_weight,
        canary_plants=[] if in_canary else live.canary_plants,
        shadow=None if in_shadow else live.shadow,
        shadow_sample=0.0 if in_shadow else live.shadow_sample,
        note=reason,
    )
    set_live_routes(state, spec, actor, reason)
    return True


def retire(state: StateStore, version: str, actor: str, reason: str = "") -> VersionInfo:
    live = current_routes(state)
    if live is not None and version in versions_of(live):
        raise ConflictError(f"{version} is in the live routes; take it out first", field="version")
    return transition(state, version, "retired", actor, reason)


def add_evidence(
    state: StateStore, version: str, kind: str, data: Any, actor: str, summary: str = ""
) -> int:
    """Keep a piece of evidence about a version (a shadow report, an approval's comparison)."""
    now = datetime.now(UTC)
    clean = json.loads(audit.canonical(data))
    with audit.transaction(state) as con:
        _require(con, version)
        res = con.execute(
            insert(version_evidence).values(
                version=version, kind=kind, created_at=now, actor=actor, data=clean
            )
        )
        assert res.inserted_primary_key is not None
        eid = int(res.inserted_primary_key[0])
        audit.append(
            con,
            actor,
            f"evidence.{kind}",
            version,
            summary,
            {
                "evidence_id": eid,
                "summary": clean.get("summary", {}) if isinstance(clean, dict) else {},
            },
            at=now,
        )
    return eid


def evidence(state: StateStore, version: str, kind: str | None = None) -> list[dict[str, Any]]:
    q = select(version_evidence).where(version_evidence.c.version == version)
    if kind:
        q = q.where(version_evidence.c.kind == kind)
    with state.engine.connect() as con:
        rows = con.execute(q.order_by(version_evidence.c.id)).all()
    return [{**dict(r._mapping), "created_at": r.created_at} for r in rows]


# ---- release of a quarantined version ------------------------------------------------------------
@dataclass
class ReleaseRequest:
    id: int
    version: str
    status: str
    requested_at: datetime
    requested_by_key: int
    requested_by: str
    reason: str
    decided_at: datetime | None = None
    decided_by_key: int | None = None
    decided_by: str | None = None
    evidence: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k in ("requested_at", "decided_at"):
            out[k] = out[k].isoformat() if out[k] else None
        return out


def _request(r: Any) -> ReleaseRequest:
    return ReleaseRequest(
        id=r.id,
        version=r.version,
        status=r.status,
        requested_at=r.requested_at,
        requested_by_key=r.requested_by_key,
        requested_by=r.requested_by,
        reason=r.reason,
        decided_at=r.decided_at,
        decided_by_key=r.decided_by_key,
        decided_by=r.decided_by,
        evidence=r.evidence,
    )


def release_requests_of(state: StateStore, version: str) -> list[ReleaseRequest]:
    with state.engine.connect() as con:
        rows = con.execute(
            select(release_requests)
            .where(release_requests.c.version == version)
            .order_by(release_requests.c.id)
        ).all()
    return [_request(r) for r in rows]


def request_release(
    state: StateStore, version: str, key: ApiKey, reason: str = ""
) -> ReleaseRequest:
    """Ask for a quarantined version to be released; a different key must approve it."""
    now = datetime.now(UTC)
    with (
        refusals_audited(state, key_actor(key), "release.refused", version, {"key_id": key.id}),
        audit.transaction(state) as con,
    ):
        info = _require(con, version)
        if info.status != "quarantined":
            raise ConflictError(
                f"{version} is {info.status}, not quarantined; nothing to release", field="version"
            )
        open_ = con.execute(
            select(release_requests).where(
                release_requests.c.version == version, release_requests.c.status == "open"
            )
        ).one_or_none()
        if open_ is not None:
            raise ConflictError(
                f"release request {open_.id} for {version} is open already "
                f"(by {open_.requested_by})",
                field="version",
            )
        actor = key_actor(key)
        res = con.execute(
            insert(release_requests).values(
                version=version,
                status="open",
                requested_at=now,
                requested_by_key=key.id,
                requested_by=actor,
                reason=reason or "",
            )
        )
        assert res.inserted_primary_key is not None
        rid = int(res.inserted_primary_key[0])
        audit.append(
            con,
            actor,
            "release.request",
            version,
            reason,
            {"request_id": rid, "key_id": key.id, "role": key.role},
            at=now,
        )
        row = con.execute(select(release_requests).where(release_requests.c.id == rid)).one()
    return _request(row)


@dataclass
class ApprovalResult:
    approved: bool
    version: str
    request: ReleaseRequest
    comparison: dict[str, Any]
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "approved": self.approved,
            "version": self.version,
            "request": self.request.to_dict(),
            "comparison": self.comparison,
            "reasons": self.reasons,
        }


def _require_fresh_answers(run: dict[str, Any], info: VersionInfo) -> None:
    """Refuse a run whose answers predate the version's last change.

    A quarantined version changes only by its quarantine and by endpoint moves, and each sets its
    ``updated_at``; a run that answered from the cache (or was made before a move) says nothing
    about what the version serves now."""
    changed = max(t for t in (info.updated_at, info.quarantined_at) if t is not None)
    oldest = (run.get("params") or {}).get("oldest_answer_at")
    answered = as_utc(datetime.fromisoformat(oldest)) if oldest else run["created_at"]
    if answered is not None and answered < changed:
        cached = int(run.get("n_cached") or 0)
        raise InputError(
            f"evaluation run {run['name']} has answers generated at "
            f"{answered:%Y-%m-%d %H:%M:%S} UTC, before {info.version}'s last change "
            f"({changed:%Y-%m-%d %H:%M:%S} UTC: quarantine or endpoint move)"
            + (f"; {cached} of its answers came from the cache" if cached else "")
            + "; re-validate with modelwarden eval run --no-cache at the version's endpoint",
            field="eval_run",
        )


def approve_release(
    state: StateStore,
    version: str,
    key: ApiKey,
    eval_run: str,
    baseline_run: str | None = None,
    gate_path: Path | None = None,
    note: str = "",
) -> ApprovalResult:
    """Release a quarantined version back to staging if the evidence holds; else refuse.

    Evidence: ``eval_run`` is a run of ``version`` made after it was quarantined, and its
    comparison against ``baseline_run`` (default: the newest run of the stable version) passes the
    gate (default: the release gate's hard gates, no safety or forbidden-content violation).
    The approver's key must have the ``approver`` role and must not be the requester's key.
    """
    actor = key_actor(key)
    with refusals_audited(
        state, actor, "release.refused", version, {"eval_run": eval_run, "key_id": key.id}
    ):
        return _approve_release(state, version, key, actor, eval_run, baseline_run, gate_path, note)


def _approve_release(
    state: StateStore,
    version: str,
    key: ApiKey,
    actor: str,
    eval_run: str,
    baseline_run: str | None,
    gate_path: Path | None,
    note: str,
) -> ApprovalResult:
    # lazy: gate specs pull in scipy and the text metrics; keeps the registry commands fast
    from modelwarden.evals.compare import GateSpec

    info = get(state, version)
    if info.status != "quarantined":
        raise ConflictError(
            f"{version} is {info.status}, not quarantined; nothing to approve", field="version"
        )
    if key.role != APPROVER_ROLE:
        raise ForbiddenError(
            f"approving a release needs a key with the approver role; this key is {key.role!r}",
            role=key.role,
        )
    pending = [r for r in release_requests_of(state, version) if r.status == "open"]
    if not pending:
        raise ConflictError(
            f"nobody asked for {version} to be released; first: modelwarden registry "
            f"request-release {version} --key KEY",
            field="version",
        )
    req = pending[-1]
    if req.requested_by_key == key.id:
        raise ForbiddenError(
            f"key {key.id} asked for this release; a different key with the approver role must "
            "approve it",
            key_id=key.id,
        )
    run = get_run(state, eval_run)
    if run["model"] != version:
        raise InputError(
            f"evaluation run {run['name']} is of {run['model']}, not {version}", field="eval_run"
        )
    run_at = run["created_at"]
    if info.quarantined_at and run_at and run_at < info.quarantined_at:
        raise InputError(
            f"evaluation run {run['name']} was made before {version} was quarantined "
            f"({info.quarantined_at:%Y-%m-%d %H:%M} UTC); re-validate the fixed version",
            field="eval_run",
        )
    _require_fresh_answers(run, info)
    if baseline_run is None:
        stable = stable_version(state)
        base = latest_run(state, stable.version) if stable is not None else None
        if base is None:
            raise InputError(
                "no evaluation run of the stable version to compare against; run the golden set "
                "on it (modelwarden eval run) or give --baseline-run",
                field="baseline_run",
            )
    else:
        base = get_run(state, baseline_run)
    gate = GateSpec.load(gate_path) if gate_path is not None else GateSpec()
    cmp, comparison_id = compare_stored(state, base["id"], run["id"], gate)
    checks = [c.to_dict() for c in cmp.checks]
    comparison = {
        "eval_run": run["id"],
        "eval_run_name": run["name"],
        "baseline_run": base["id"],
        "baseline_run_name": base["name"],
        "baseline_model": base["model"],
        "comparison_id": comparison_id,
        "gate": cmp.gate.name,
        "passed": cmp.passed,
        "checks": checks,
        "golden": {
            "name": run["golden_name"],
            "version": run["golden_version"],
            "hash": run["golden_hash"],
        },
    }
    now = datetime.now(UTC)
    if not cmp.passed:
        failed = [c["name"] for c in checks if not c.get("passed")]
        audit.record(
            state,
            actor,
            "release.refused",
            version,
            f"gate {cmp.gate.name} failed: {', '.join(failed)}",
            comparison,
            at=now,
        )
        return ApprovalResult(
            False, version, req, comparison, [f"gate {cmp.gate.name} failed: {', '.join(failed)}"]
        )
    with audit.transaction(state) as con:
        con.execute(
            update(release_requests)
            .where(release_requests.c.id == req.id)
            .values(
                status="approved",
                decided_at=now,
                decided_by_key=key.id,
                decided_by=actor,
                evidence=json.loads(audit.canonical(comparison)),
            )
        )
        audit.append(
            con,
            actor,
            "release.approve",
            version,
            note,
            {"request_id": req.id, "requested_by": req.requested_by, **comparison},
            at=now,
        )
        transition_in(
            con,
            version,
            "staging",
            actor,
            f"release {req.id} approved",
            {"request_id": req.id, "comparison_id": comparison_id},
            released=True,
            at=now,
        )
        row = con.execute(select(release_requests).where(release_requests.c.id == req.id)).one()
    return ApprovalResult(True, version, _request(row), comparison)


# ---- routes: the registry's say over what the gateway may serve ------------------------------------
def check_routes(state: StateStore, spec: RouteSpec) -> None:
    """The check ``set_routes`` makes before it writes a route table."""
    refuse_quarantined(spec, quarantined_versions(state))


def set_live_routes(
    state: StateStore, spec: RouteSpec, actor: str, reason: str = "", if_version: int | None = None
) -> RouteTable:
    """Check, write and audit a route table: how everything in this package changes routes."""
    with refusals_audited(
        state,
        actor,
        "routes.refused",
        "routes",
        {"requested": spec.model_dump(mode="json"), "if_version": if_version},
    ):
        check_routes(state, spec)
        table = set_routes(state, spec, created_by=actor, if_version=if_version)
    audit.record(
        state,
        actor,
        "routes.set",
        "routes",
        reason,
        {"route_version": table.version, **spec.model_dump(mode="json")},
    )
    return table


def without_quarantined(table: RouteTable | None, quarantined: frozenset[str]) -> RouteTable | None:
    """The table the gateway may use: a quarantined canary or shadow is dropped (stable kept)."""
    if table is None or not quarantined:
        return table
    drop_canary = table.canary is not None and table.canary.version in quarantined
    drop_shadow = table.shadow is not None and table.shadow.version in quarantined
    if not (drop_canary or drop_shadow):
        return table
    update_: dict[str, Any] = {}
    if drop_canary:
        update_.update(canary=None, canary_weight=0.0, canary_plants=[])
    if drop_shadow:
        update_.update(shadow=None, shadow_sample=0.0)
    return table.model_copy(update=update_)


class GuardedRoutes(RouteCache):
    """The gateway's route cache, minus any quarantined canary or shadow.

    A route table written before a quarantine (or by a writer that did not check) may still name
    a quarantined version; the gateway never gets it from here. Same interface as
    :class:`~modelwarden.governance.routes.RouteCache`; the quarantine list is re-read at most every
    ``ttl`` seconds, as the routes are.
    """

    def __init__(self, state: StateStore, ttl: float = 0.5) -> None:
        super().__init__(state, ttl)
        self._quarantined: frozenset[str] = frozenset()
        self._q_expires = 0.0
        self._q_lock = threading.Lock()

    def quarantined(self) -> frozenset[str]:
        now = time.monotonic()
        if now >= self._q_expires:
            with self._q_lock:
                if now >= self._q_expires:
                    # The last list read stands while the state store is away.
                    with contextlib.suppress(*UNREACHABLE):
                        self._quarantined = quarantined_versions(self.state)
                    self._q_expires = time.monotonic() + self.ttl
        return self._quarantined

    def get(self) -> RouteTable | None:
        return without_quarantined(super().get(), self.quarantined())

    def invalidate(self) -> None:
        self._q_expires = 0.0
        super().invalidate()


__all__ = [
    "STATUSES",
    "TRANSITIONS",
    "ApprovalResult",
    "GuardedRoutes",
    "ReleaseRequest",
    "VersionInfo",
    "add",
    "add_evidence",
    "approve_release",
    "check_routes",
    "cli_actor",
    "evidence",
    "find_in",
    "get",
    "get_in",
    "identify",
    "is_quarantined",
    "key_actor",
    "list_versions",
    "promote",
    "quarantine",
    "quarantine_in",
    "quarantined_versions",
    "refuse_quarantined",
    "release_requests_of",
    "remove_from_routes",
    "request_release",
    "retire",
    "route_stable",
    "set_endpoint",
    "set_live_routes",
    "stable_version",
    "transition",
    "without_quarantined",
]
