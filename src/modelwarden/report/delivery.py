"""The weekly pack delivered to leadership: built, rendered to HTML and PDF, and queued to every
target in the notification outbox (retries included); and the schedule that does it in ``serve``.

Targets (setting ``report_delivery``), one string each:

- ``smtp://host:port/lead@example.com,cto@example.com?from=warden@example.com``: an e-mail with
  the HTML report as its body and its PDF attached; ``smtp://user@host:587/…?starttls=1`` upgrades
  the connection with STARTTLS and ``smtps://user@host:465/…`` uses implicit TLS, verified against
  the system's authorities or ``&ca_file=/path.pem``; a login's password is read when sending from
  ``MODELWARDEN_REPORT_SMTP_PASSWORD`` (or the file ``…_PASSWORD_FILE`` names; another variable
  with ``&password_env=NAME``), never from the URL; a login without TLS needs ``&plain_login=1``;
- ``https://…`` or ``http://…``: a webhook, a JSON POST with the headline, the findings and a link;
- ``slack+https://hooks.slack.com/…`` (or any ``https://hooks.slack.com/`` URL): a Slack message;
- ``file:///folder``: the webhook's JSON written into the folder.

A week's row in the ``report_sends`` ledger and its deliveries are written in one transaction,
so a week is sent once: a second tick, a restart or a second server finds it sent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from modelwarden import mail
from modelwarden.errors import ConflictError, InputError, NotFoundError
from modelwarden.governance import audit, notify
from modelwarden.policy.spec import Notify
from modelwarden.report import ledger
from modelwarden.report.files import write_report
from modelwarden.report.schedule import Schedule, check, parse_schedule
from modelwarden.report.weekly import WeeklyReport, build_weekly_report, headline
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

log = logging.getLogger("modelwarden.report.delivery")

EVENT = "modelwarden.weekly_report"
HEADLINE_FINDINGS = 5
# Where the password of an smtp:// target's login is read from when sending (or its ``_FILE``).
PASSWORD_ENV = "MODELWARDEN_REPORT_SMTP_PASSWORD"
_YES = ("1", "true", "yes", "on")
_NO = ("0", "false", "no", "off", "")
# A send this long after its slot is a make-up run (the server was down), not the scheduled one.
ON_TIME = timedelta(minutes=15)


# ---- targets ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    channel: str  # email, webhook, slack, file
    target: str  # the outbox's target: a URL, smtp://host:port/recipients, or a folder
    shown: str  # the target without secrets (a webhook's path is its password)
    relay: mail.Relay | None = None
    to: tuple[str, ...] = ()
    sender: str = "modelwarden@localhost"


def _bad(raw: str, why: str) -> InputError:
    return InputError(f"report_delivery target {raw!r}: {why}", field="report_delivery")


def parse_target(raw: str) -> Target:
    text = raw.strip()
    try:
        u = urlsplit(text)
        port = u.port
    except ValueError as exc:
        raise _bad(raw, str(exc)) from None
    scheme = u.scheme.lower()
    if scheme in ("smtp", "smtps"):
        return _email_target(raw, u, port)
    if scheme in ("http", "https", "slack+http", "slack+https"):
        if not u.hostname:
            raise _bad(raw, "a webhook needs a host")
        slack = scheme.startswith("slack+") or u.hostname == "hooks.slack.com"
        url = text.split("+", 1)[1] if scheme.startswith("slack+") else text
        shown = f"{scheme.removeprefix('slack+')}://{u.netloc.rpartition('@')[2]}/…"
        return Target("slack" if slack else "webhook", url, shown)
    if scheme == "file":
        if not u.path:
            raise _bad(raw, "a folder target is file:///absolute/folder")
        folder = unquote(u.path)
        return Target("file", folder, f"file://{folder}")
    raise _bad(raw, "use smtp://, smtps://, https://, slack+https:// or file:///")


def _flag(raw: str, query: dict[str, list[str]], name: str) -> bool:
    value = query.get(name, ["0"])[-1].strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise _bad(raw, f"{name}={value!r}: use 1 or 0")


def _email_target(raw: str, u: SplitResult, port: int | None) -> Target:
    to = tuple(a for a in unquote(u.path.strip("/")).split(",") if a)
    if not u.hostname or not to:
        raise _bad(raw, "an e-mail target is smtp://host:port/to@example.com[,more]")
    if not all("@" in a for a in to):
        raise _bad(raw, "every recipient must be an e-mail address")
    query = parse_qs(u.query, keep_blank_values=True)
    unknown = set(query) - {"from", "starttls", "ca_file", "password_env", "plain_login"}
    if unknown:
        raise _bad(
            raw,
            f"unknown option {', '.join(sorted(unknown))}: use from, starttls, ca_file, "
            "password_env or plain_login",
        )
    if u.password is not None:
        raise _bad(
            raw.replace(f":{u.password}@", ":***@", 1),
            f"no password in the URL: put it in {PASSWORD_ENV} (or a file named by "
            f"{PASSWORD_ENV}_FILE)",
        )
    starttls = _flag(raw, query, "starttls")
    if u.scheme.lower() == "smtps":
        if starttls:
            raise _bad(raw, "smtps:// is implicit TLS already; starttls=1 is for smtp://")
        security = "ssl"
    else:
        security = "starttls" if starttls else "none"
    user = unquote(u.username) if u.username else None
    plain_login = _flag(raw, query, "plain_login")
    if user and (problem := mail.login_problem(security, plain_login)):
        raise _bad(raw, problem.replace("security to starttls or ssl", "starttls=1 or smtps://"))
    ca_file = query.get("ca_file", [""])[-1] or None
    if ca_file and security == "none":
        raise _bad(raw, "ca_file is for TLS: use starttls=1 or smtps://")
    password_env = query.get("password_env", [PASSWORD_ENV])[-1]
    if problem := mail.env_name_problem(password_env):
        raise _bad(raw, f"password_env: {problem}")
    relay = mail.Relay(
        host=u.hostname,
        port=port or mail.DEFAULT_PORTS[security],
        security=security,
        user=user,
        password_env=password_env if user else None,
        ca_file=ca_file,
        plain_login=plain_login,
    )
    target = relay.target(to)
    sender = query.get("from", ["modelwarden@localhost"])[-1]
    return Target("email", target, target, relay=relay, to=to, sender=sender)


def parse_targets(items: list[str]) -> list[Target]:
    return [parse_target(t) for t in items]


# ---- the pack -----------------------------------------------------------------------------------
@dataclass
class Pack:
    report: WeeklyReport
    html: Path
    pdf: Path
    link: str

    @property
    def headline(self) -> str:
        return headline(self.report)


def report_link(settings: Settings, week: str) -> str:
    return f"{settings.public_url.rstrip('/')}/reports/{week}"


def render_pdf(html_path: Path, pdf_path: Path) -> Path:
    """The HTML page as a PDF (WeasyPrint, with the system's Pango and fonts)."""
    # Imported here: WeasyPrint loads Pango and its fonts, which a server that never sends a
    # pack (or the CLI's --help) should not pay for.
    from weasyprint import HTML

    tmp = pdf_path.with_name(pdf_path.name + ".tmp")
    HTML(filename=str(html_path), base_url=str(html_path.parent)).write_pdf(str(tmp))
    tmp.replace(pdf_path)
    return pdf_path


def build_pack(
    settings: Settings,
    week: str | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Pack:
    """Build the week's report and write it as DATA/reports/weekly-W.html and .pdf."""
    rep = build_weekly_report(settings, week, progress=progress, on_total=on_total)
    html_path = write_report(rep, None, settings, "html")
    pdf_path = render_pdf(html_path, html_path.with_suffix(".pdf"))
    return Pack(rep, html_path, pdf_path, report_link(settings, rep.week))


def message_text(pack: Pack) -> str:
    rep = pack.report
    lines = [pack.headline, ""]
    if rep.findings:
        lines.append("Findings:")
        lines += [f"- {f}" for f in rep.findings[:HEADLINE_FINDINGS]]
        more = len(rep.findings) - HEADLINE_FINDINGS
        if more > 0:
            lines.append(f"- … and {more} more in the report")
        lines.append("")
    lines.append(f"The report: {pack.link}")
    return "\n".join(lines)


def deliveries(
    targets: list[Target], pack: Pack, event_id: str
) -> list[tuple[str, str, dict[str, Any]]]:
    """(channel, target, payload) for the outbox, one per target."""
    rep = pack.report
    text = message_text(pack)
    summary = {
        "event": EVENT,
        "event_id": event_id,
        "week": rep.week,
        "start": rep.start.isoformat(),
        "end": rep.end.isoformat(),
        "headline": pack.headline,
        "finding_count": len(rep.findings),
        "findings": rep.findings[:HEADLINE_FINDINGS],
        "drift_status": rep.drift_status,
        "link": pack.link,
        "text": text,
    }
    out: list[tuple[str, str, dict[str, Any]]] = []
    for t in targets:
        if t.channel == "email" and t.relay is not None:
            payload: dict[str, Any] = {
                **t.relay.payload(),
                "from": t.sender,
                "to": list(t.to),
                "subject": f"Weekly pack {rep.week}: {pack.headline}",
                "text": text + "\n\nThe full report is attached as a PDF.",
                "html_path": str(pack.html),
                "attachments": [
                    {
                        "path": str(pack.pdf),
                        "filename": f"modelwarden-weekly-{rep.week}.pdf",
                        "content_type": "application/pdf",
                    }
                ],
            }
        elif t.channel == "slack":
            findings = "".join(f"\n• {f}" for f in rep.findings[:HEADLINE_FINDINGS])
            payload = {"text": f"*{pack.headline}*{findings}\n<{pack.link}|Open the report>"}
        else:
            payload = summary
        out.append((t.channel, t.target, payload))
    return out


# ---- sending ------------------------------------------------------------------------------------
@dataclass
class SendResult:
    week: str
    event_id: str
    trigger: str
    actor: str
    sent_at: datetime
    due_at: datetime | None
    headline: str
    findings: list[str]
    link: str
    files: dict[str, str]
    targets: list[dict[str, str]]
    queued: int
    sends: int
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _state(settings: Settings, state: StateStore | None) -> StateStore:
    return state or StateStore.of(settings)


def require_targets(settings: Settings) -> list[Target]:
    targets = parse_targets(settings.report_delivery)
    if not targets:
        raise InputError(
            "no delivery targets: set report_delivery (e.g. MODELWARDEN_REPORT_DELIVERY="
            "'[\"smtp://mail:25/lead@example.com\"]')",
            field="report_delivery",
        )
    return targets


def send_week(
    settings: Settings,
    week: str | None = None,
    *,
    state: StateStore | None = None,
    now: datetime | None = None,
    force: bool = False,
    trigger: str = "manual",
    actor: str = "system",
    due_at: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> SendResult:
    """Build ``week``'s pack (default: the latest complete week in the store) and queue it to
    every target. A week already sent is refused (audited) unless ``force``."""
    targets = require_targets(settings)
    st = _state(settings, state)
    now = now or datetime.now(UTC)
    if week is not None:
        _refuse_if_sent(st, week, force, actor)
    pack = build_pack(settings, week, progress=progress, on_total=on_total)
    week = pack.report.week
    _refuse_if_sent(st, week, force, actor)
    prior = ledger.sent(st, week)
    sends = 1 + (prior["sends"] if prior else 0)
    event_id = f"weekly-report-{week}" + (f"-{sends}" if sends > 1 else "")
    files = {"html": str(pack.html), "pdf": str(pack.pdf)}
    shown = [{"channel": t.channel, "target": t.shown} for t in targets]
    row = {
        "sent_at": now,
        "due_at": due_at,
        "trigger": trigger,
        "actor": actor,
        "sends": sends,
        "event_id": event_id,
        "targets": shown,
        "files": files,
        "headline": pack.headline[:500],
    }
    cfg = Notify()
    try:
        with audit.transaction(st) as con:
            if prior:
                con.execute(
                    update(ledger.report_sends)
                    .where(ledger.report_sends.c.week == week)
                    .values(**row)
                )
            else:
                con.execute(insert(ledger.report_sends).values(week=week, **row))
            queued = notify.enqueue_payloads(
                con, event_id, cfg, deliveries(targets, pack, event_id)
            )
            audit.append(
                con,
                actor,
                "report.sent",
                week,
                f"weekly pack ({trigger})",
                {
                    "event_id": event_id,
                    "targets": shown,
                    "sends": sends,
                    "headline": row["headline"],
                },
            )
    except IntegrityError:
        # Another process sent this week between our check and our insert.
        raise _refused(st, week, actor, "was sent by another process just now") from None
    return SendResult(
        week=week,
        event_id=event_id,
        trigger=trigger,
        actor=actor,
        sent_at=now,
        due_at=due_at,
        headline=pack.headline,
        findings=pack.report.findings[:HEADLINE_FINDINGS],
        link=pack.link,
        files=files,
        targets=shown,
        queued=queued,
        sends=sends,
    )


def _refused(st: StateStore, week: str, actor: str, why: str) -> ConflictError:
    exc = ConflictError(f"the weekly pack of {week} {why}; --force sends it again", field="week")
    audit.record(st, actor, "report.refused", week, exc.message, {"error": exc.code})
    return exc


def _refuse_if_sent(st: StateStore, week: str, force: bool, actor: str) -> None:
    prior = ledger.sent(st, week)
    if prior and not force:
        raise _refused(
            st,
            week,
            actor,
            f"was already sent at {prior['sent_at']:%Y-%m-%d %H:%M} UTC ({prior['trigger']}, "
            f"{prior['actor']})",
        )


def deliver(st: StateStore, event_id: str) -> list[dict[str, Any]]:
    """Try the outbox now and return the state of this event's deliveries."""
    notify.deliver_due(st)
    return [
        {k: n[k] for k in ("channel", "target", "status", "attempts", "last_error")}
        for n in notify.of_incident(st, event_id)
    ]


# ---- the schedule -------------------------------------------------------------------------------
def schedule_of(settings: Settings) -> Schedule:
    return parse_schedule(settings.report_schedule, settings.report_timezone)


def schedule_status(
    settings: Settings, now: datetime | None = None, *, state: StateStore | None = None
) -> dict[str, Any]:
    """What the schedule says now: the last week sent, the week owed (if any), the next slot."""
    s = schedule_of(settings)
    st = _state(settings, state)
    now = now or datetime.now(UTC)
    last = ledger.last_sent(st)
    due = check(now, s, last["week"] if last else None)
    targets = parse_targets(settings.report_delivery)
    return {
        "schedule": s.label(),
        "now": now.astimezone(UTC),
        "enabled": bool(targets),
        "targets": [{"channel": t.channel, "target": t.shown} for t in targets],
        "public_url": settings.public_url,
        "last_sent_week": last["week"] if last else None,
        "last_sent_at": last["sent_at"] if last else None,
        "last_trigger": last["trigger"] if last else None,
        "owed_week": due.week,
        "owed_since": due.week_due_at,
        "next_week": due.next_week,
        "next_due_at": due.next_due_at,
        "next_due_local": due.next_due_at.astimezone(s.tz),
        "history": ledger.history(st, limit=8),
    }


def run_due(
    settings: Settings, now: datetime, *, state: StateStore | None = None
) -> SendResult | None:
    """Send the week the schedule owes at ``now``, if any; None when nothing is owed."""
    s = schedule_of(settings)
    st = _state(settings, state)
    last = ledger.last_sent(st)
    due = check(now, s, last["week"] if last else None)
    if due.week is None or due.week_due_at is None:
        return None
    late = now - due.week_due_at > ON_TIME
    return send_week(
        settings,
        due.week,
        state=st,
        now=now,
        trigger="catch-up" if late else "schedule",
        actor="schedule",
        due_at=due.week_due_at,
    )


class ReportScheduler:
    """Checks the schedule once at start and every ``interval_s`` after, in a daemon thread, and
    sends what is owed; then delivers the outbox (failed deliveries are retried at later checks).

    ``clock`` tells the time (a test or a simulation moves it); :meth:`check` runs one check in
    the caller's thread. ``checks`` counts finished checks, ``wait_checks(n, timeout)`` waits for
    them.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] | None = None,
        interval_s: float = 60.0,
    ) -> None:
        self.settings = settings
        schedule_of(settings)  # a bad schedule stops the server at start, naming the setting
        require_targets(settings)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.interval_s = interval_s
        self.last: SendResult | None = None
        self.last_error: str | None = None
        self.checks = 0
        self._lock = threading.Lock()
        self._done = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state: StateStore | None = None
        self._quiet: set[str] = set()

    def start(self) -> ReportScheduler:
        self._state = StateStore.of(self.settings)
        self._thread = threading.Thread(target=self._run, name="modelwarden-report", daemon=True)
        self._thread.start()
        return self

    def check(self) -> SendResult | None:
        with self._lock:
            if self._state is None:
                self._state = StateStore.of(self.settings)
            sent: SendResult | None = None
            try:
                sent = run_due(self.settings, self.clock(), state=self._state)
                self.last_error = None
            except NotFoundError as exc:
                # No data for the owed week (a new installation, say): said once per message.
                self.last_error = exc.message
                if exc.message not in self._quiet:
                    self._quiet.add(exc.message)
                    log.warning("weekly pack not sent: %s", exc.message)
            except ConflictError as exc:
                self.last_error = exc.message
            except Exception as exc:  # the loop outlives one bad check
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("weekly pack check failed")
            if sent is not None:
                self.last = sent
                log.info(
                    "weekly pack %s queued to %d target(s) (%s)",
                    sent.week,
                    sent.queued,
                    sent.trigger,
                )
            try:
                notify.deliver_due(self._state)
            except Exception:
                log.exception("delivering the outbox failed")
            if sent is not None:
                sent.deliveries = [
                    {k: n[k] for k in ("channel", "status", "attempts", "last_error")}
                    for n in notify.of_incident(self._state, sent.event_id)
                ]
        with self._done:
            self.checks += 1
            self._done.notify_all()
        return sent

    def wait_checks(self, n: int, timeout: float) -> bool:
        with self._done:
            return self._done.wait_for(lambda: self.checks >= n, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self.interval_s)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._state is not None:
            self._state.close()


__all__ = [
    "EVENT",
    "Pack",
    "ReportScheduler",
    "SendResult",
    "Target",
    "build_pack",
    "deliver",
    "deliveries",
    "parse_target",
    "parse_targets",
    "render_pdf",
    "report_link",
    "run_due",
    "schedule_of",
    "schedule_status",
    "send_week",
]
