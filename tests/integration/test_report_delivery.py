"""The weekly pack reaches leadership by itself: `serve` sends it on its schedule (a clock the test
moves), by e-mail (HTML body, PDF attached) to a local SMTP server and to a webhook receiver, makes
up a run missed while it was down, and never sends a week twice."""

from __future__ import annotations

import email
import json
import re
import shutil
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from modelwarden.demo.receiver import WebhookReceiver
from modelwarden.errors import ConflictError, InputError
from modelwarden.governance import audit
from modelwarden.governance.keys import create_key
from modelwarden.report import delivery, ledger
from modelwarden.report.delivery import parse_target
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, free_port
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

PUBLIC = "https://warden.plant.example"


class Mailbox:
    """aiosmtpd handler: every message received, as parsed e-mails with their envelope."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=default_policy)
        with self._lock:
            self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Any:
    box = Mailbox()
    port = free_port("127.0.0.1")
    ctl = Controller(box, hostname="127.0.0.1", port=port, data_size_limit=50_000_000)
    ctl.start()
    try:
        yield box, port
    finally:
        ctl.stop()


@pytest.fixture
def receiver() -> Any:
    r = WebhookReceiver().start()
    try:
        yield r
    finally:
        r.stop()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def _settings(data: Path, targets: list[str]) -> Settings:
    return Settings(
        data_dir=data,
        embedder="hashing",
        embed_threads=1,
        report_schedule="MON 06:00",
        report_timezone="Europe/Berlin",
        report_delivery=targets,
        public_url=PUBLIC,
    )


def test_serve_sends_the_pack_on_schedule_once_per_week(
    seeded_data_dir: Path,
    tmp_path: Path,
    smtp: Any,
    receiver: WebhookReceiver,
    run_cli: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box, smtp_port = smtp
    data = tmp_path / "warden-data"
    shutil.copytree(seeded_data_dir, data)
    outbox_dir = tmp_path / "pack-outbox"
    targets = [
        f"smtp://127.0.0.1:{smtp_port}/lead@plant.example,cto@plant.example"
        "?from=warden@plant.example",
        receiver.url,
        f"file://{outbox_dir}",
    ]
    s = _settings(data, targets)
    # The seeded store ends on Monday 2026-11-23 00:00 UTC: 2026-W47's pack was due at 06:00 in
    # Berlin (05:00 UTC). The server was down then and starts at 10:00 Berlin time.
    now = [utc(2026, 11, 23, 9, 0)]
    config = ServerConfig(run_controller=False, report_check_interval_s=3600)
    app = create_app(s, config, clock=lambda: now[0])
    with ServerThread(app) as srv:
        sched = app.state.runtime.reports
        assert sched is not None
        assert sched.wait_checks(1, timeout=600), "the start-up check did not finish"
        assert sched.last_error is None
        sent = sched.last
        assert sent is not None
        assert (sent.week, sent.trigger, sent.actor) == ("2026-W47", "catch-up", "schedule")
        assert sent.due_at == utc(2026, 11, 23, 5, 0)
        assert [d["status"] for d in sent.deliveries] == ["sent", "sent", "sent"]

        # The e-mail: one message to both recipients, the HTML report as its body, the PDF.
        assert len(box.messages) == 1
        rcpt, msg = box.messages[0]
        assert sorted(rcpt) == ["cto@plant.example", "lead@plant.example"]
        assert msg["From"] == "warden@plant.example"
        headline = sent.headline
        assert headline.startswith("Week 2026-W47: ") and "drift" in headline
        assert msg["Subject"] == f"Weekly pack 2026-W47: {headline}"
        body = msg.get_body(("html",))
        assert body is not None
        page = body.get_content()
        assert f'<p id="headline"><b>{headline}</b></p>' in page
        assert "Weekly Manufacturing Copilot Performance Report" in page
        # Charts travel as inline parts the page refers to, not as data: URIs.
        cids = re.findall(r'src="cid:([^"]+)"', page)
        assert len(cids) == 5 and "data:image" not in page
        related = {p["Content-ID"].strip("<>") for p in msg.walk() if p["Content-ID"]}
        assert set(cids) <= related
        text = msg.get_body(("plain",))
        assert text is not None and f"{PUBLIC}/reports/2026-W47" in text.get_content()
        pdfs = [p for p in msg.iter_attachments() if p.get_content_type() == "application/pdf"]
        assert len(pdfs) == 1
        assert pdfs[0].get_filename() == "modelwarden-weekly-2026-W47.pdf"
        pdf = pdfs[0].get_content()
        assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
        assert pdf == (data / "reports" / "weekly-2026-W47.pdf").read_bytes()

        # The webhook: the headline findings and the link.
        hooks = receiver.messages()
        assert len(hooks) == 1
        hook = hooks[0]["body"]
        assert hook["event"] == "modelwarden.weekly_report"
        assert (hook["week"], hook["headline"]) == ("2026-W47", headline)
        assert hook["link"] == f"{PUBLIC}/reports/2026-W47"
        assert hook["findings"] == sent.findings and hook["finding_count"] >= len(sent.findings)
        assert hook["findings"], "the seeded week has findings (a bad canary at Plant_B)"
        assert (outbox_dir / f"{sent.event_id}.json").is_file()

        # A second check in the same week sends nothing.
        now[0] = utc(2026, 11, 24, 12, 0)
        assert sched.check() is None
        # Monday 30th, 05:59 Berlin (04:59 UTC): 2026-W48 is not due yet.
        now[0] = utc(2026, 11, 30, 4, 59)
        assert sched.check() is None and sched.last_error is None
        # 06:00 Berlin: W48 is due, but the store holds nothing of it: said, nothing sent.
        now[0] = utc(2026, 11, 30, 5, 0)
        assert sched.check() is None
        assert sched.last_error is not None and "2026-W48" in sched.last_error
        assert len(box.messages) == 1 and len(receiver.messages()) == 1

        # The link opens the week's pack in the console (after signing in).
        secret, _ = create_key(app.state.runtime.state, "admin", "lead")
        with httpx.Client(base_url=srv.url, follow_redirects=False) as http:
            r = http.get("/reports/2026-W47")
            assert r.status_code in (302, 303) and "next=/reports/2026-W47" in r.headers["location"]
            form = http.get("/signin").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form)
            assert csrf
            r = http.post(
                "/signin", data={"key": secret, "csrf": csrf[1], "next": "/reports/2026-W47"}
            )
            assert r.status_code in (302, 303)
            page = http.get("/reports/2026-W47")
            assert page.status_code == 200
            assert 'src="/reports/files/weekly-2026-W47.html"' in page.text
            pdf_file = http.get("/reports/files/weekly-2026-W47.pdf")
            assert pdf_file.headers["content-type"] == "application/pdf"
            assert http.get("/reports/2026-W44").status_code == 404

    st = StateStore.of(s)
    try:
        row = ledger.sent(st, "2026-W47")
        assert row is not None and row["sends"] == 1 and row["trigger"] == "catch-up"
        assert [e.subject for e in audit.entries(st, action="report.sent")] == ["2026-W47"]
    finally:
        st.close()

    # A restart later that week finds the week sent and sends nothing again.
    now[0] = utc(2026, 11, 25, 8, 0)
    app2 = create_app(s, config, clock=lambda: now[0])
    with ServerThread(app2):
        sched2 = app2.state.runtime.reports
        assert sched2.wait_checks(1, timeout=120)
        assert sched2.last is None and sched2.last_error is None
    assert len(box.messages) == 1 and len(receiver.messages()) == 1

    # By hand: a week already sent is refused (and the refusal audited) unless forced.
    st = StateStore.of(s)
    try:
        with pytest.raises(ConflictError) as err:
            delivery.send_week(s, "2026-W47", state=st, actor="cli:test")
        assert err.value.field == "week" and "already sent" in err.value.message
        refused = audit.entries(st, action="report.refused")
        assert [(e.actor, e.subject) for e in refused] == [("cli:test", "2026-W47")]
        status = delivery.schedule_status(s, utc(2026, 11, 25, 8, 0), state=st)
        assert status["last_sent_week"] == "2026-W47" and status["owed_week"] is None
        assert status["next_week"] == "2026-W48"
        assert status["next_due_at"] == utc(2026, 11, 30, 5, 0)
        assert status["schedule"] == "MON 06:00 Europe/Berlin"
    finally:
        st.close()

    # The same from the command line, where the settings come from the environment.
    monkeypatch.setenv("MODELWARDEN_REPORT_SCHEDULE", "MON 06:00")
    monkeypatch.setenv("MODELWARDEN_REPORT_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("MODELWARDEN_REPORT_DELIVERY", json.dumps(targets))
    monkeypatch.setenv("MODELWARDEN_PUBLIC_URL", PUBLIC)
    again = run_cli("report", "send", "--week", "2026-W47", data=data)
    assert again.code == 2 and "already sent" in again.err and "--force" in again.err
    forced = run_cli(
        "report",
        "send",
        "--week",
        "2026-W47",
        "--force",
        "--format",
        "json",
        data=data,
        timeout=600,
    )
    assert forced.code == 0, forced.err
    out = json.loads(forced.out)
    assert (out["week"], out["sends"], out["trigger"]) == ("2026-W47", 2, "manual")
    assert [d["status"] for d in out["deliveries"]] == ["sent", "sent", "sent"]
    assert len(box.messages) == 2 and len(receiver.messages()) == 2
    assert box.messages[1][1]["Subject"] == f"Weekly pack 2026-W47: {out['headline']}"
    shown = run_cli("report", "schedule", "--format", "json", data=data)
    assert shown.code == 0, shown.err
    info = json.loads(shown.out)
    assert info["schedule"] == "MON 06:00 Europe/Berlin" and info["last_sent_week"] == "2026-W47"
    assert info["last_trigger"] == "manual"
    assert [t["channel"] for t in info["targets"]] == ["email", "webhook", "file"]


@pytest.mark.parametrize(
    ("raw", "channel", "target"),
    [
        (
            "smtp://mail.example:2525/a@x.org,b@x.org",
            "email",
            "smtp://mail.example:2525/a@x.org,b@x.org",
        ),
        ("smtp://mail.example/a@x.org", "email", "smtp://mail.example:25/a@x.org"),
        ("https://hooks.example/abc", "webhook", "https://hooks.example/abc"),
        (
            "https://hooks.slack.com/services/T/B/X",
            "slack",
            "https://hooks.slack.com/services/T/B/X",
        ),
        ("slack+https://chat.example/hook", "slack", "https://chat.example/hook"),
        ("file:///srv/packs", "file", "/srv/packs"),
    ],
)
def test_delivery_targets(raw: str, channel: str, target: str) -> None:
    t = parse_target(raw)
    assert (t.channel, t.target) == (channel, target)
    # What `report schedule` shows never carries a webhook's secret path.
    if channel in ("webhook", "slack"):
        assert t.shown.endswith("/…") and "/services/" not in t.shown


@pytest.mark.parametrize(
    "raw", ["smtp://mail.example/", "smtp://mail.example/not-an-address", "ftp://x/y", "mailto:a@b"]
)
def test_bad_targets_name_the_setting(raw: str) -> None:
    with pytest.raises(InputError) as err:
        parse_target(raw)
    assert err.value.field == "report_delivery" and raw in err.value.message
