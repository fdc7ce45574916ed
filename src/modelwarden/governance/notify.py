"""Notifications about incidents: a persisted outbox, delivered in the background with retries.

Channels (``policy.notify``; ``modelwarden policy notify set`` writes them into the policy file,
and ``MODELWARDEN_NOTIFY_*`` variables override them field by field, see :func:`targets`):

- ``webhook_url``: a JSON POST of the whole incident summary (``event``, ``incident_id``, ``rule``,
  ``value``, ``baseline_value``, ``n``, ``threshold``, ...);
- ``slack_webhook_url``: a Slack-compatible incoming webhook, ``{"channel": ..., "text": ...}``;
- ``smtp_host`` + ``email_to``: a plain-text e-mail through SMTP (:mod:`modelwarden.mail`:
  ``smtp_security`` none, starttls or ssl, an optional ``smtp_user`` whose password is read when
  sending from ``MODELWARDEN_NOTIFY_SMTP_PASSWORD`` or the file ``…_PASSWORD_FILE`` names, and
  ``smtp_ca_file``); a payload may also
  carry an HTML body (``html``, or ``html_path`` read at sending time, its embedded ``data:``
  images sent as inline parts) and files to attach (``attachments``: ``path``, ``filename``,
  ``content_type``), as the weekly pack does;
- ``file_dir``: the webhook's JSON written to ``file_dir/<incident>.json`` (a channel that needs
  no other system: a shared folder, a log shipper's inbox).

The rollback writes one outbox row per channel in the state store and moves on: a slow or broken
channel can neither delay the re-route nor undo it. :func:`deliver_due` sends what is due; a
failure waits ``retry_backoff_s · 2^(attempts-1)`` (at most five minutes) before the next try,
up to ``retry_attempts`` tries. A delivery is claimed by pushing its due time forward before it
is sent, so two processes never send the same row at the same moment; a process that dies
mid-send leaves the row due again after the claim expires.

A channel that is down shows while it is being retried, not only once it has failed for good:
:func:`outbox` lists the rows with their attempts and last error (``modelwarden notify status``,
``GET /v1/notifications``), and :func:`outbox_counts` gives the figures ``/metrics`` exports.
Targets are shown without their path and query (a Slack webhook's path is its secret).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from sqlalchemy import (
    Connection,
    Integer,
    func,
    insert,
    select,
    update,
)

from modelwarden import mail
from modelwarden.errors import InputError
from modelwarden.governance import audit
from modelwarden.policy import store as policy_service
from modelwarden.policy.spec import Notify, Policy, default_policy, policy_path
from modelwarden.settings import NOTIFY_FIELDS, Settings
from modelwarden.store.state import StateStore
from modelwarden.store.tables import notifications

log = logging.getLogger("modelwarden.governance.notify")

MAX_BACKOFF_S = 300.0
CLAIM_S = 120.0
CHANNELS = ("webhook", "slack", "email", "file")
# Where the password of ``notify.smtp_user`` is read from when sending (or its ``_FILE``).
PASSWORD_ENV = "MODELWARDEN_NOTIFY_SMTP_PASSWORD"


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def render_text(summary: dict[str, Any]) -> str:
    """The human message: what happened, what was done, and the numbers behind the decision."""
    t = summary.get("trigger") or {}
    rollback = summary.get("action", "rolled back") == "rolled back"
    done = (
        f"rolled back {summary.get('version')} → 100% of traffic on "
        f"{summary.get('stable_version')}. The system is stable."
        if rollback
        else f"alert on {summary.get('version')}; no traffic was moved."
    )
    lines = [
        f"[{summary.get('sop_id', 'SOP-MLOPS-003')}] {summary.get('headline', 'Model rollback')}",
        f"Incident {summary['incident_id']}: {done}",
        f"Rule: {t.get('rule_id')} ({t.get('title', '')}) scope {t.get('scope')}",
        f"Value: {_fmt(t.get('value'))} against baseline {_fmt(t.get('baseline_value'))} "
        f"({t.get('baseline') or '—'}); change {_fmt(t.get('change'))}; threshold "
        f"{_fmt(t.get('threshold'))} ({t.get('comparator') or '—'})",
        f"n: {t.get('n')} candidate, {t.get('n_baseline')} baseline; p = {_fmt(t.get('p_value'))}",
        f"Detected at {summary.get('detected_at')}; logs for the root cause analysis: "
        f"{summary.get('rca_dir') or 'pending'}",
    ]
    if rollback:
        lines.append(
            f"{summary.get('version')} is quarantined until a passing evaluation and an approval."
        )
    return "\n".join(lines)


# ---- where notifications go ---------------------------------------------------------------------
def env_overrides(settings: Settings) -> dict[str, Any]:
    """The notification fields the settings (``MODELWARDEN_NOTIFY_*``) set."""
    return {
        name: getattr(settings, f"notify_{name}")
        for name in NOTIFY_FIELDS
        if getattr(settings, f"notify_{name}") is not None
    }


def targets(settings: Settings, policy: Policy) -> Notify:
    """The targets in force: the policy's ``notify`` with the settings' values over it."""
    over = env_overrides(settings)
    if not over:
        return policy.notify
    try:
        return Notify.model_validate({**policy.notify.model_dump(), **over})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = str(err["loc"][0]) if err["loc"] else "notify"
        raise InputError(
            f"MODELWARDEN_NOTIFY_{name.upper()}: {str(err['msg']).removeprefix('Value error, ')}",
            field=f"notify_{name}",
        ) from None


CLEARABLE = {
    "webhook": ("webhook_url",),
    "slack": ("slack_webhook_url",),
    "email": ("smtp_host", "email_to"),
}


def configure(
    settings: Settings,
    state: StateStore,
    changes: dict[str, Any],
    actor: str,
    clear: list[str] | None = None,
    path: Path | None = None,
) -> Policy:
    """Set notification targets in the policy in force and audit the change: a new version in
    the state store when the policy is kept there (``policy set``), else the policy file
    (``DATA/policy.yaml`` unless ``path``; the built-in policy is written out first when there is
    none).

    ``changes`` holds :class:`Notify` fields; ``clear`` names channels to switch off
    (``webhook``, ``slack``, ``email``). Everything else in the file is kept.
    """
    target = Path(path) if path is not None else policy_path(settings.data_dir)
    # The policy in force lives in the state store once one was set there: change that one.
    in_state = policy_service.stored(state) if path is None else None
    if in_state is not None:
        policy = in_state.policy
    else:
        policy = Policy.load(target) if target.exists() else default_policy()
    data = policy.notify.model_dump()
    for channel in clear or []:
        if channel not in CLEARABLE:
            raise InputError(
                f"--clear takes {', '.join(CLEARABLE)}, not {channel!r}", field="clear"
            )
        for name in CLEARABLE[channel]:
            data[name] = [] if name == "email_to" else None
    unknown = set(changes) - set(Notify.model_fields)
    if unknown:
        raise InputError(f"not a notification setting: {', '.join(sorted(unknown))}")
    data.update({k: v for k, v in changes.items() if v is not None})
    try:
        cfg = Notify.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = str(err["loc"][0]) if err["loc"] else "notify"
        raise InputError(str(err["msg"]).removeprefix("Value error, "), field=name) from None
    if cfg.email_to and not cfg.smtp_host:
        raise InputError("e-mail needs an SMTP server: give --smtp-host", field="smtp_host")
    new = policy.model_copy(update={"notify": cfg})
    before, after = policy.notify.model_dump(mode="json"), cfg.model_dump(mode="json")
    evidence: dict[str, Any] = {
        "changed": {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]},
        "channels": cfg.channels(),
    }
    why = "notification targets changed"
    if in_state is None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(new.to_yaml(), encoding="utf-8")
        tmp.replace(target)
        audit.record(state, actor, "policy.notify", str(target), why, evidence)
        return new
    with audit.transaction(state) as con:
        stored = policy_service.insert_in(
            con, new, f"state store (version {in_state.version})", actor, why, datetime.now(UTC)
        )
        audit.append(
            con, actor, "policy.notify", "state store", why, {**evidence, "version": stored.version}
        )
    return new


def payloads(cfg: Notify, summary: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(channel, target, payload) for every configured channel."""
    text = render_text(summary)
    out: list[tuple[str, str, dict[str, Any]]] = []
    if cfg.webhook_url:
        event = (
            "modelwarden.rollback"
            if summary.get("action", "rolled back") == "rolled back"
            else "modelwarden.alert"
        )
        out.append(("webhook", cfg.webhook_url, {"event": event, **summary, "text": text}))
    if cfg.file_dir:
        event = (
            "modelwarden.rollback"
            if summary.get("action", "rolled back") == "rolled back"
            else "modelwarden.alert"
        )
        out.append(("file", cfg.file_dir, {"event": event, **summary, "text": text}))
    if cfg.slack_webhook_url:
        out.append(("slack", cfg.slack_webhook_url, {"channel": cfg.slack_channel, "text": text}))
    if cfg.smtp_host and cfg.email_to:
        t = summary.get("trigger") or {}
        what = (
            "rollback of" if summary.get("action", "rolled back") == "rolled back" else "alert on"
        )
        subject = (
            f"[{summary.get('sop_id', 'SOP-MLOPS-003')}] {what} "
            f"{summary.get('version')}: {t.get('rule_id')} ({summary['incident_id']})"
        )
        out.append(email_delivery(cfg, subject, text))
    return out


def relay(cfg: Notify) -> mail.Relay:
    """The SMTP relay of the notification settings (no password: it is read when sending)."""
    if not cfg.smtp_host:
        raise InputError("e-mail needs an SMTP server: give --smtp-host", field="smtp_host")
    return mail.Relay(
        host=cfg.smtp_host,
        port=cfg.smtp_port,
        security=cfg.smtp_security,
        user=cfg.smtp_user,
        password_env=PASSWORD_ENV if cfg.smtp_user else None,
        ca_file=cfg.smtp_ca_file,
        plain_login=cfg.smtp_plain_login,
    )


def email_delivery(cfg: Notify, subject: str, text: str) -> tuple[str, str, dict[str, Any]]:
    """The ``email`` delivery of a message to ``cfg.email_to`` through ``cfg``'s relay."""
    r = relay(cfg)
    payload = {
        **r.payload(),
        "from": cfg.email_from,
        "to": list(cfg.email_to),
        "subject": subject,
        "text": text,
    }
    return ("email", r.target(cfg.email_to), payload)


def enqueue(
    con: Connection,
    incident_id: str,
    cfg: Notify,
    summary: dict[str, Any],
    now: datetime | None = None,
) -> int:
    """Add the incident's notifications to the outbox (once per channel and target)."""
    return enqueue_payloads(con, incident_id, cfg, payloads(cfg, summary), now)


def enqueue_payloads(
    con: Connection,
    event_id: str,
    cfg: Notify,
    deliveries: list[tuple[str, str, dict[str, Any]]],
    now: datetime | None = None,
) -> int:
    """Add ``(channel, target, payload)`` deliveries of one event to the outbox, with ``cfg``'s
    retries and timeout; a channel and target already queued for the event is not added again."""
    now = now or datetime.now(UTC)
    added = 0
    for channel, target, payload in deliveries:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        exists = con.execute(
            select(notifications.c.id).where(
                notifications.c.incident_id == event_id,
                notifications.c.channel == channel,
                notifications.c.target == target,
            )
        ).first()
        if exists:
            continue
        con.execute(
            insert(notifications).values(
                incident_id=event_id,
                channel=channel,
                target=target,
                payload=json.loads(json.dumps(payload, default=str)),
                status="pending",
                attempts=0,
                max_attempts=cfg.retry_attempts,
                backoff_ms=max(round(cfg.retry_backoff_s * 1000), 1),
                timeout_ms=max(round(cfg.timeout_s * 1000), 1),
                next_attempt_at=now,
                created_at=now,
            )
        )
        added += 1
    return added


def enqueue_event(
    con: Connection,
    event_id: str,
    cfg: Notify,
    event: str,
    data: dict[str, Any],
    text: str,
    now: datetime | None = None,
) -> int:
    """Add an event that is not an incident (an audit checkpoint, say) to the outbox: the whole
    ``data`` to the webhook, ``text`` to Slack and e-mail. Once per event, channel and target."""
    now = now or datetime.now(UTC)
    out: list[tuple[str, str, dict[str, Any]]] = []
    if cfg.webhook_url:
        out.append(("webhook", cfg.webhook_url, {"event": event, **data, "text": text}))
    if cfg.slack_webhook_url:
        out.append(("slack", cfg.slack_webhook_url, {"channel": cfg.slack_channel, "text": text}))
    if cfg.smtp_host and cfg.email_to:
        out.append(email_delivery(cfg, f"[modelwarden] {event}", text))
    return enqueue_payloads(con, event_id, cfg, out, now)


# ---- sending ----------------------------------------------------------------------------------------
class DeliveryError(Exception):
    pass


_DATA_IMAGE = re.compile(r'src="data:image/(png|jpeg|gif);base64,([A-Za-z0-9+/=\s]+)"')


def email_message(payload: dict[str, Any]) -> EmailMessage:
    """The e-mail of an ``email`` payload: the plain text, the HTML alternative if any (its
    ``data:`` images moved into inline parts, which mail clients show and data URIs they often
    do not), and the attachments, read from disk now."""
    msg = EmailMessage()
    msg["From"] = payload["from"]
    msg["To"] = ", ".join(payload["to"])
    msg["Subject"] = payload["subject"]
    msg.set_content(payload["text"])
    page = payload.get("html")
    if page is None and payload.get("html_path"):
        page = Path(payload["html_path"]).read_text(encoding="utf-8")
    if page is not None:
        images: list[tuple[str, str, bytes]] = []

        def to_cid(m: re.Match[str]) -> str:
            cid = make_msgid(domain="modelwarden")
            images.append((cid, m[1], base64.b64decode(m[2])))
            return f'src="cid:{cid[1:-1]}"'

        msg.add_alternative(_DATA_IMAGE.sub(to_cid, page), subtype="html")
        html_part = msg.get_body(("html",))
        if images and isinstance(html_part, EmailMessage):
            for cid, subtype, data in images:
                html_part.add_related(data, "image", subtype, cid=cid)
    for a in payload.get("attachments") or []:
        path = Path(a["path"])
        maintype, _, subtype = a.get("content_type", "application/octet-stream").partition("/")
        msg.add_attachment(
            path.read_bytes(), maintype, subtype, filename=a.get("filename") or path.name
        )
    return msg


def send(channel: str, target: str, payload: dict[str, Any], timeout: float) -> None:
    """One delivery attempt; raises :class:`DeliveryError` with the reason on failure."""
    try:
        if channel in ("webhook", "slack"):
            resp = httpx.post(target, json=payload, timeout=timeout)
            if resp.status_code >= 300:
                raise DeliveryError(f"HTTP {resp.status_code}: {resp.text[:300]}")
        elif channel == "email":
            mail.send(mail.Relay.of_payload(payload), email_message(payload), timeout)
        elif channel == "file":
            folder = Path(target)
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{payload.get('incident_id') or payload.get('event_id') or 'notification'}.json"
            tmp = folder / f".{name}.tmp"
            tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
            tmp.replace(folder / name)
        else:
            raise DeliveryError(f"unknown channel {channel!r}")
    except DeliveryError:
        raise
    except mail.MailError as exc:
        raise DeliveryError(str(exc)) from None
    except (httpx.HTTPError, OSError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None


@dataclass
class Delivery:
    id: int
    incident_id: str
    channel: str
    target: str
    status: str
    attempts: int
    error: str | None = None


def _claim(state: StateStore, now: datetime, limit: int) -> list[Any]:
    with state.engine.begin() as con:
        due = con.execute(
            select(notifications)
            .where(notifications.c.status == "pending", notifications.c.next_attempt_at <= now)
            .order_by(notifications.c.next_attempt_at, notifications.c.id)
            .limit(limit)
        ).all()
        claimed = []
        for r in due:
            res = con.execute(
                update(notifications)
                .where(
                    notifications.c.id == r.id,
                    notifications.c.status == "pending",
                    notifications.c.next_attempt_at == r.next_attempt_at,
                )
                .values(next_attempt_at=now + timedelta(seconds=CLAIM_S))
            )
            if res.rowcount == 1:
                claimed.append(r)
    return claimed


def deliver_due(state: StateStore, now: datetime | None = None, limit: int = 50) -> list[Delivery]:
    """Try every notification that is due; returns what happened to each."""
    now = now or datetime.now(UTC)
    out = []
    for r in _claim(state, now, limit):
        attempts = r.attempts + 1
        try:
            send(r.channel, r.target, r.payload, r.timeout_ms / 1000)
        except DeliveryError as exc:
            error = str(exc)[:2000]
            done = attempts >= r.max_attempts
            wait = min(r.backoff_ms / 1000 * 2 ** (attempts - 1), MAX_BACKOFF_S)
            values: dict[str, Any] = {
                "attempts": attempts,
                "last_error": error,
                "status": "failed" if done else "pending",
                "next_attempt_at": datetime.now(UTC) + timedelta(seconds=wait),
            }
            log.warning(
                "notification %s (%s) attempt %d failed: %s", r.id, r.channel, attempts, error
            )
            out.append(
                Delivery(
                    r.id, r.incident_id, r.channel, r.target, values["status"], attempts, error
                )
            )
        else:
            values = {
                "attempts": attempts,
                "status": "sent",
                "sent_at": datetime.now(UTC),
                "last_error": None,
            }
            out.append(Delivery(r.id, r.incident_id, r.channel, r.target, "sent", attempts))
        with state.engine.begin() as con:
            con.execute(update(notifications).where(notifications.c.id == r.id).values(**values))
    return out


def next_due(state: StateStore) -> datetime | None:
    with state.engine.connect() as con:
        v = con.execute(
            select(notifications.c.next_attempt_at)
            .where(notifications.c.status == "pending")
            .order_by(notifications.c.next_attempt_at)
            .limit(1)
        ).scalar_one_or_none()
    return v


def of_incident(state: StateStore, incident_id: str) -> list[dict[str, Any]]:
    with state.engine.connect() as con:
        rows = con.execute(
            select(notifications)
            .where(notifications.c.incident_id == incident_id)
            .order_by(notifications.c.id)
        ).all()
    return [dict(r._mapping) for r in rows]


STATUSES = ("pending", "sent", "failed")


def redact_target(target: str) -> str:
    """``https://hooks.example.com/…``: where a delivery goes, without the secret in its path."""
    try:
        u = urllib.parse.urlsplit(target)
    except ValueError:
        return "…"
    if u.scheme in ("smtp", "smtps"):
        return target  # host, port, login user and addresses: nothing secret
    if not u.scheme or not u.hostname:
        return "…"
    host = u.hostname if u.port is None else f"{u.hostname}:{u.port}"
    return f"{u.scheme}://{host}/…" if (u.path.strip("/") or u.query) else f"{u.scheme}://{host}"


def _row(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "event": r.incident_id,
        "channel": r.channel,
        "target": redact_target(r.target),
        "status": r.status,
        "attempts": r.attempts,
        "max_attempts": r.max_attempts,
        "last_error": r.last_error,
        "next_attempt_at": r.next_attempt_at if r.status == "pending" else None,
        "created_at": r.created_at,
        "sent_at": r.sent_at,
    }


def outbox(state: StateStore, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Outbox rows, newest first; ``status`` one of pending, sent, failed (None: all)."""
    q = select(notifications).order_by(notifications.c.id.desc()).limit(limit)
    if status is not None:
        q = q.where(notifications.c.status == status)
    with state.engine.connect() as con:
        return [_row(r) for r in con.execute(q).all()]


def outbox_counts(state: StateStore) -> dict[str, int]:
    """Rows by status, ``retrying`` (pending after a failed attempt) and ``failed_attempts`` (every
    delivery attempt that failed so far, retried or not)."""
    with state.engine.connect() as con:
        rows = con.execute(
            select(
                notifications.c.status,
                func.count(),
                func.coalesce(func.sum(notifications.c.attempts), 0),
                func.sum((notifications.c.attempts > 0).cast(Integer)),
            ).group_by(notifications.c.status)
        ).all()
    out = {s: 0 for s in STATUSES} | {"retrying": 0, "failed_attempts": 0}
    for status, n, attempts, tried in rows:
        out[status] = int(n)
        if status == "pending":
            out["retrying"] = int(tried or 0)
            out["failed_attempts"] += int(attempts)
        elif status == "sent":
            out["failed_attempts"] += int(attempts) - int(n)  # every try but the last
        else:
            out["failed_attempts"] += int(attempts)
    return out


class Notifier:
    """Delivers the outbox in a daemon thread: woken by :meth:`kick`, sleeping until the next due.

    ``drain(timeout)`` waits (at most ``timeout``) for pending notifications to settle, for
    short-lived processes such as a CLI command that just rolled back.
    """

    def __init__(self, state: StateStore, idle_s: float = 30.0) -> None:
        self.state = state
        self.idle_s = idle_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Notifier:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="modelwarden-notify", daemon=True
            )
            self._thread.start()
        return self

    def kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def drain(self, timeout: float) -> bool:
        """True when nothing is due any more (sent, failed for good, or waiting to retry)."""
        self.kick()
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                deliver_due(self.state)
                due = next_due(self.state)
            except Exception:  # the loop must outlive a broken database moment
                log.exception("notification delivery failed")
                due = None
            now = datetime.now(UTC)
            if due is None or due > now:
                self._idle.set()
            wait = self.idle_s if due is None else max(0.0, (due - now).total_seconds())
            self._wake.wait(min(wait, self.idle_s))
            self._wake.clear()


__all__ = [
    "CHANNELS",
    "Delivery",
    "Notifier",
    "deliver_due",
    "email_message",
    "enqueue",
    "enqueue_event",
    "enqueue_payloads",
    "next_due",
    "notifications",
    "of_incident",
    "outbox",
    "outbox_counts",
    "payloads",
    "redact_target",
    "render_text",
    "send",
]
