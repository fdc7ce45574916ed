"""Incidents: what triggered a rollback, each step the rollback took, and the logs before it.

An incident records the trigger (rule, scope, value, baseline, n, threshold, p-value, when) and
one row per completed step of the rollback transaction (:mod:`modelwarden.rollout.rollback`);
its timeline is those steps and the notifications' deliveries, in time order.

The RCA extract is the log store's content for the ``rca_lookback`` window before the trigger
(every request of every version and route, the feedback and the escalations of that window),
written to ``DATA/incidents/<id>/`` as Parquet and as JSONL, with a ``manifest.json`` written
last: a directory without a manifest is an extract that did not finish.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    insert,
    select,
    update,
)

from modelwarden.errors import NotFoundError
from modelwarden.governance import audit, notify
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore
from modelwarden.store.tables import incident_steps, incidents

RCA_TABLES = ("requests", "feedback", "escalations")
STATUSES = ("open", "mitigated", "closed")


@dataclass
class Incident:
    id: str
    key: str
    status: str
    severity: str
    version: str
    stable_version: str | None
    rollout_id: int | None
    rule_id: str
    trigger: dict[str, Any]
    detected_at: datetime
    created_at: datetime
    updated_at: datetime
    actor: str
    rca_dir: str | None = None
    note: str | None = None
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k in ("detected_at", "created_at", "updated_at"):
            out[k] = out[k].isoformat()
        out["steps"] = {
            k: {**v, "done_at": v["done_at"].isoformat()} for k, v in self.steps.items()
        }
        return out

    def summary(self, sop_id: str = "SOP-MLOPS-003") -> dict[str, Any]:
        """What notifications carry."""
        rollback = self.severity == "rollback"
        return {
            "incident_id": self.id,
            "sop_id": sop_id,
            "severity": self.severity,
            "headline": f"Emergency model rollback: {self.version} → {self.stable_version}"
            if rollback
            else f"SOP alert for {self.version}: {self.rule_id} (no rollback)",
            "action": "rolled back" if rollback else "alert",
            "version": self.version,
            "stable_version": self.stable_version,
            "rollout_id": self.rollout_id,
            "detected_at": self.detected_at.isoformat(),
            "trigger": self.trigger,
            "rca_dir": self.rca_dir,
        }


def _incident(r: Any, steps: Sequence[Any] | None = None) -> Incident:
    inc = Incident(
        id=r.id,
        key=r.key,
        status=r.status,
        severity=r.severity,
        version=r.version,
        stable_version=r.stable_version,
        rollout_id=r.rollout_id,
        rule_id=r.rule_id,
        trigger=r.trigger or {},
        detected_at=r.detected_at,
        created_at=r.created_at,
        updated_at=r.updated_at,
        actor=r.actor,
        rca_dir=r.rca_dir,
        note=r.note,
    )
    for s in steps or []:
        inc.steps[s.step] = {"done_at": s.done_at, "detail": s.detail or {}}
    return inc


def new_id(at: datetime) -> str:
    return f"INC-{at.astimezone(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def open_in(con: Connection, key: str, values: dict[str, Any]) -> tuple[Incident, bool]:
    """The unfinished incident with ``key``, or a new one; True when it was created now."""
    row = con.execute(
        select(incidents)
        .where(incidents.c.key == key, incidents.c.status != "closed")
        .order_by(incidents.c.created_at.desc())
        .limit(1)
    ).one_or_none()
    if row is not None:
        return load_in(con, row.id), False
    now = datetime.now(UTC)
    iid = new_id(values["detected_at"])
    con.execute(
        insert(incidents).values(
            id=iid, key=key, status="open", created_at=now, updated_at=now, **values
        )
    )
    return load_in(con, iid), True


def load_in(con: Connection, incident_id: str) -> Incident:
    row = con.execute(select(incidents).where(incidents.c.id == incident_id)).one_or_none()
    if row is None:
        raise NotFoundError(
            f"no incident {incident_id}; list them with: modelwarden incidents list",
            field="incident",
        )
    steps = con.execute(
        select(incident_steps)
        .where(incident_steps.c.incident_id == incident_id)
        .order_by(incident_steps.c.done_at)
    ).all()
    return _incident(row, steps)


def get(state: StateStore, incident_id: str) -> Incident:
    with state.engine.connect() as con:
        return load_in(con, incident_id)


def list_incidents(
    state: StateStore, status: str | None = None, limit: int = 100
) -> list[Incident]:
    q = select(incidents).order_by(incidents.c.detected_at.desc()).limit(limit)
    if status:
        q = q.where(incidents.c.status == status)
    with state.engine.connect() as con:
        rows = con.execute(q).all()
        return [load_in(con, r.id) for r in rows]


def mark_step(
    con: Connection,
    incident_id: str,
    step: str,
    detail: dict[str, Any],
    actor: str,
    at: datetime | None = None,
) -> None:
    at = at or datetime.now(UTC)
    con.execute(
        insert(incident_steps).values(
            incident_id=incident_id,
            step=step,
            done_at=at,
            detail=json.loads(audit.canonical(detail)),
        )
    )
    con.execute(update(incidents).where(incidents.c.id == incident_id).values(updated_at=at))
    audit.append(
        con, actor, f"rollback.{step}", incident_id, detail.get("summary", ""), detail, at=at
    )


def set_fields(con: Connection, incident_id: str, **values: Any) -> None:
    con.execute(
        update(incidents)
        .where(incidents.c.id == incident_id)
        .values(updated_at=datetime.now(UTC), **values)
    )


def close(state: StateStore, incident_id: str, actor: str, note: str) -> Incident:
    with audit.transaction(state) as con:
        inc = load_in(con, incident_id)
        set_fields(con, incident_id, status="closed", note=note)
        audit.append(con, actor, "incident.close", incident_id, note, {"from": inc.status})
        return load_in(con, incident_id)


def timeline(state: StateStore, inc: Incident) -> list[dict[str, Any]]:
    """The incident's events in time order: the trigger, each step, each notification."""
    t = inc.trigger
    events: list[dict[str, Any]] = [
        {
            "at": inc.detected_at,
            "event": "detected",
            "detail": f"{inc.rule_id} ({t.get('scope', '—')}): {t.get('message') or ''}".strip(),
        }
    ]
    for step, s in inc.steps.items():
        events.append({"at": s["done_at"], "event": step, "detail": s["detail"].get("summary", "")})
    for n in notify.of_incident(state, inc.id):
        if n["status"] == "sent":
            events.append(
                {
                    "at": n["sent_at"],
                    "event": f"notified {n['channel']}",
                    "detail": f"{n['target']} after {n['attempts']} attempt(s)",
                }
            )
        elif n["status"] == "failed":
            events.append(
                {
                    "at": n["next_attempt_at"],
                    "event": f"notify {n['channel']} failed",
                    "detail": f"gave up after {n['attempts']} attempts: {n['last_error']}",
                }
            )
        else:
            events.append(
                {
                    "at": n["next_attempt_at"],
                    "event": f"notify {n['channel']} pending",
                    "detail": f"attempt {n['attempts'] + 1} due"
                    + (f"; last error: {n['last_error']}" if n["last_error"] else ""),
                }
            )
    return sorted(events, key=lambda e: e["at"])


# ---- the RCA extract ---------------------------------------------------------------------------------
def rca_dir(settings: Settings, incident_id: str) -> Path:
    return settings.data_dir / "incidents" / incident_id


def _fsync_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    def default(v: Any) -> Any:
        if isinstance(v, datetime):
            return audit.iso(v)
        return str(v)

    return "".join(json.dumps(r, ensure_ascii=False, default=default) + "\n" for r in rows).encode(
        "utf-8"
    )


def write_rca(
    settings: Settings, incident_id: str, until: datetime, lookback: timedelta
) -> dict[str, Any]:
    """Write the logs of ``(until - lookback, until]``; returns the manifest. Idempotent."""
    # lazy: pyarrow and the log store are needed only when a rollback writes its RCA extract;
    # keeps the start-up of the commands that read incidents fast
    import pyarrow.parquet as pq

    from modelwarden.store.logstore import write_parquet_atomic
    from modelwarden.store.reads import open_store

    out = rca_dir(settings, incident_id)
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        return dict(json.loads(manifest_path.read_text()))
    out.mkdir(parents=True, exist_ok=True)
    since = until - lookback
    con = open_store(settings).connect()
    files: dict[str, Any] = {}
    for name in RCA_TABLES:
        t = con.table(name)
        t = t.filter((t.timestamp > since) & (t.timestamp <= until)).order_by("timestamp")
        table = con.to_pyarrow(t)
        write_parquet_atomic(table, out / f"{name}.parquet")
        _fsync_write(out / f"{name}.jsonl", _jsonl(table.to_pylist()))
        files[name] = {
            "rows": table.num_rows,
            "parquet": f"{name}.parquet",
            "jsonl": f"{name}.jsonl",
        }
        assert pq.ParquetFile(out / f"{name}.parquet").metadata.num_rows == table.num_rows
    manifest = {
        "incident_id": incident_id,
        "since": audit.iso(since),
        "until": audit.iso(until),
        "lookback": str(lookback),
        "files": files,
    }
    _fsync_write(manifest_path, json.dumps(manifest, indent=2).encode())
    return manifest


__all__ = [
    "Incident",
    "close",
    "get",
    "incident_steps",
    "incidents",
    "list_incidents",
    "load_in",
    "mark_step",
    "open_in",
    "rca_dir",
    "set_fields",
    "timeline",
    "write_rca",
]
