"""E-mail through relays that want TLS and a login: real aiosmtpd servers on 127.0.0.1.

A self-signed certificate for 127.0.0.1 is made per test module with the ``openssl`` command; the
relays offer STARTTLS (and refuse AUTH before it) or implicit TLS, and accept one user and
password. Notifications and the weekly pack's ``smtp://``/``smtps://`` targets are sent through
the real outbox; the password is given in the environment (or a file it names) and must never
show in the policy, the outbox, the audit log or an error.
"""

from __future__ import annotations

import email
import json
import logging
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from email.policy import default as email_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from modelwarden.errors import InputError
from modelwarden.governance import audit, notify
from modelwarden.policy.spec import Notify, Policy, default_policy, policy_path
from modelwarden.report import delivery
from modelwarden.server.runner import free_port
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore
from modelwarden.store.tables import notifications

USER = "warden@plant.example"
PASSWORD = "s3cret-Relay-password"
NOTIFY_ENV = "MODELWARDEN_NOTIFY_SMTP_PASSWORD"
REPORT_ENV = "MODELWARDEN_REPORT_SMTP_PASSWORD"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@dataclass
class Cert:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    d = tmp_path_factory.mktemp("tls")
    c = Cert(d / "relay.pem", d / "relay.key")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-keyout",
            str(c.key),
            "-out",
            str(c.cert),
        ],
        check=True,
        capture_output=True,
    )
    return c


class Mailbox:
    """Every message the relay accepted, with its envelope and whether the sender logged in."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage, bool]] = []
        self.logins: list[str] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email_policy)
        assert isinstance(msg, EmailMessage)
        with self._lock:
            self.messages.append((list(envelope.rcpt_tos), msg, bool(session.authenticated)))
        return "250 Message accepted for delivery"

    def authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == USER
            and auth_data.password.decode() == PASSWORD
        )
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 535 itself


def relay(**kw: Any) -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port("127.0.0.1")
    ctl = Controller(box, hostname="127.0.0.1", port=port, authenticator=box.authenticator, **kw)
    ctl.start()
    try:
        yield box, port
    finally:
        ctl.stop()


@pytest.fixture
def starttls_relay(cert: Cert) -> Iterator[tuple[Mailbox, int]]:
    """Port 587 style: STARTTLS required before anything, AUTH only after it."""
    yield from relay(tls_context=cert.server_context(), require_starttls=True)


@pytest.fixture
def login_only_relay(cert: Cert) -> Iterator[tuple[Mailbox, int]]:
    """STARTTLS, and AUTH LOGIN as the one mechanism offered."""
    yield from relay(
        tls_context=cert.server_context(), require_starttls=True, auth_exclude_mechanism=["PLAIN"]
    )


@pytest.fixture
def ssl_relay(cert: Cert) -> Iterator[tuple[Mailbox, int]]:
    """Port 465 style: TLS from the first byte. (aiosmtpd counts only STARTTLS as TLS for its
    auth_require_tls, so AUTH is offered here without that check: the connection is TLS.)"""
    yield from relay(ssl_context=cert.server_context(), auth_require_tls=False)


@pytest.fixture
def plain_relay() -> Iterator[tuple[Mailbox, int]]:
    """No TLS at all, and AUTH accepted over it (an old internal relay)."""
    yield from relay(auth_require_tls=False)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "warden-data", embedder="hashing", embed_threads=1)


def _configure(settings: Settings, state: StateStore, **changes: Any) -> Notify:
    pol = notify.configure(settings, state, changes, "cli:test")
    return pol.notify


def _send_event(state: StateStore, cfg: Notify, event_id: str) -> list[dict[str, Any]]:
    with audit.transaction(state) as con:
        notify.enqueue_event(con, event_id, cfg, "test.event", {"x": 1}, "Relay check.")
    notify.deliver_due(state)
    return notify.of_incident(state, event_id)


def _everything_stored(settings: Settings, state: StateStore) -> str:
    """The policy file, every outbox row and every audit entry, as text."""
    with state.engine.connect() as con:
        rows = [dict(r._mapping) for r in con.execute(select(notifications)).all()]
    entries = [asdict(e) for e in audit.entries(state)]
    text = json.dumps(rows, default=str) + json.dumps(entries, default=str)
    path = policy_path(settings.data_dir)
    return text + (path.read_text(encoding="utf-8") if path.exists() else "")


def test_notify_over_starttls_logs_in_with_the_password_from_the_environment(
    settings: Settings,
    cert: Cert,
    starttls_relay: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box, port = starttls_relay
    monkeypatch.setenv(NOTIFY_ENV, PASSWORD)
    state = StateStore.of(settings)
    cfg = _configure(
        settings,
        state,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="starttls",
        smtp_ca_file=str(cert.cert),
        smtp_user=USER,
        email_to=["ops@plant.example"],
    )
    [row] = _send_event(state, cfg, "ev-starttls")
    assert (row["status"], row["last_error"]) == ("sent", None)
    assert row["target"] == f"smtp://{USER}@127.0.0.1:{port}/ops@plant.example?starttls=1"
    [(rcpt, msg, logged_in)] = box.messages
    assert rcpt == ["ops@plant.example"] and logged_in
    assert "Relay check." in msg.get_content()
    assert box.logins == ["PLAIN"]
    stored = _everything_stored(settings, state)
    assert USER in stored and "starttls" in stored  # the login and mode are kept ...
    assert PASSWORD not in stored  # ... and its password nowhere
    assert Policy.load(policy_path(settings.data_dir)).notify.smtp_user == USER


def test_auth_login_with_the_password_from_a_file(
    settings: Settings,
    cert: Cert,
    login_only_relay: tuple[Mailbox, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box, port = login_only_relay
    secret = tmp_path / "smtp-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    monkeypatch.delenv(NOTIFY_ENV, raising=False)
    monkeypatch.setenv(f"{NOTIFY_ENV}_FILE", str(secret))
    state = StateStore.of(settings)
    cfg = Notify(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="starttls",
        smtp_ca_file=str(cert.cert),
        smtp_user=USER,
        email_to=["ops@plant.example"],
    )
    [row] = _send_event(state, cfg, "ev-login")
    assert row["status"] == "sent", row["last_error"]
    assert box.logins == ["LOGIN"] and len(box.messages) == 1


def test_a_wrong_password_is_a_clear_delivery_error_without_the_password(
    settings: Settings,
    cert: Cert,
    starttls_relay: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    box, port = starttls_relay
    wrong = "wrong-" + PASSWORD
    monkeypatch.setenv(NOTIFY_ENV, wrong)
    state = StateStore.of(settings)
    cfg = Notify(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="starttls",
        smtp_ca_file=str(cert.cert),
        smtp_user=USER,
        email_to=["ops@plant.example"],
        retry_attempts=1,
    )
    with caplog.at_level(logging.DEBUG):
        [row] = _send_event(state, cfg, "ev-wrong")
    assert row["status"] == "failed"
    assert f"refused the login of {USER!r}: 535" in row["last_error"]
    assert "refused the login" in caplog.text and wrong not in caplog.text
    assert box.messages == []
    stored = _everything_stored(settings, state)
    assert wrong not in stored and PASSWORD not in stored


def test_no_password_given_names_the_variables(
    settings: Settings,
    cert: Cert,
    starttls_relay: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, port = starttls_relay
    monkeypatch.delenv(NOTIFY_ENV, raising=False)
    monkeypatch.delenv(f"{NOTIFY_ENV}_FILE", raising=False)
    state = StateStore.of(settings)
    cfg = Notify(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="starttls",
        smtp_ca_file=str(cert.cert),
        smtp_user=USER,
        email_to=["ops@plant.example"],
        retry_attempts=1,
    )
    [row] = _send_event(state, cfg, "ev-nopw")
    assert row["status"] == "failed"
    assert NOTIFY_ENV in row["last_error"] and f"{NOTIFY_ENV}_FILE" in row["last_error"]


def test_the_relays_certificate_is_verified_against_the_system_authorities_by_default(
    settings: Settings, starttls_relay: tuple[Mailbox, int]
) -> None:
    box, port = starttls_relay
    state = StateStore.of(settings)
    cfg = Notify(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="starttls",
        email_to=["ops@plant.example"],
        retry_attempts=1,
    )
    [row] = _send_event(state, cfg, "ev-untrusted")
    assert row["status"] == "failed"
    assert "CERTIFICATE_VERIFY_FAILED" in row["last_error"]
    assert box.messages == []


def test_a_relay_without_starttls_is_not_sent_to_in_clear(
    settings: Settings, plain_relay: tuple[Mailbox, int]
) -> None:
    box, port = plain_relay
    state = StateStore.of(settings)
    cfg = Notify(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="starttls",
        email_to=["ops@plant.example"],
        retry_attempts=1,
    )
    [row] = _send_event(state, cfg, "ev-nostarttls")
    assert row["status"] == "failed"
    assert "does not offer STARTTLS" in row["last_error"]
    assert box.messages == []


def test_credentials_over_a_plain_connection_are_refused_unless_allowed(
    settings: Settings, plain_relay: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    box, port = plain_relay
    state = StateStore.of(settings)
    with pytest.raises(InputError) as exc:
        _configure(settings, state, smtp_host="127.0.0.1", smtp_port=port, smtp_user=USER)
    assert exc.value.field == "smtp_user" and "TLS" in exc.value.message
    over = Settings(data_dir=settings.data_dir, notify_smtp_host="127.0.0.1", notify_smtp_user=USER)
    with pytest.raises(InputError) as exc:
        notify.targets(over, default_policy())
    assert exc.value.field == "notify_smtp_user"
    assert "MODELWARDEN_NOTIFY_SMTP_USER" in exc.value.message
    with pytest.raises(InputError) as exc:
        delivery.parse_target(f"smtp://{USER}@127.0.0.1:{port}/lead@plant.example")
    assert exc.value.field == "report_delivery" and "starttls=1 or smtps://" in exc.value.message

    # Allowed explicitly (an old relay inside the plant's network), the login is used.
    monkeypatch.setenv(NOTIFY_ENV, PASSWORD)
    cfg = _configure(
        settings,
        state,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_user=USER,
        smtp_plain_login=True,
        email_to=["ops@plant.example"],
    )
    [row] = _send_event(state, cfg, "ev-plain-login")
    assert row["status"] == "sent", row["last_error"]
    assert box.messages[0][2] and PASSWORD not in _everything_stored(settings, state)


def _pack_delivery(raw: str, event_id: str, state: StateStore) -> dict[str, Any]:
    """A report_delivery e-mail target's delivery through the outbox, as the pack's is."""
    t = delivery.parse_target(raw)
    assert t.relay is not None
    payload = {
        **t.relay.payload(),
        "from": t.sender,
        "to": list(t.to),
        "subject": "Weekly pack",
        "text": "The pack.",
    }
    with audit.transaction(state) as con:
        notify.enqueue_payloads(
            con, event_id, Notify(retry_attempts=1), [("email", t.target, payload)]
        )
    notify.deliver_due(state)
    [row] = notify.of_incident(state, event_id)
    return row


def test_a_report_target_over_implicit_tls_with_a_login(
    settings: Settings,
    cert: Cert,
    ssl_relay: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box, port = ssl_relay
    monkeypatch.setenv("PLANT_RELAY_PASSWORD", PASSWORD)
    monkeypatch.setenv(REPORT_ENV, "not-this-one")
    state = StateStore.of(settings)
    user = USER.replace("@", "%40")
    raw = (
        f"smtps://{user}@127.0.0.1:{port}/lead@plant.example,cto@plant.example"
        f"?from=warden@plant.example&ca_file={cert.cert}&password_env=PLANT_RELAY_PASSWORD"
    )
    row = _pack_delivery(raw, "pack-ssl", state)
    assert row["status"] == "sent", row["last_error"]
    assert row["target"].startswith(f"smtps://{USER}@127.0.0.1:{port}/")
    [(rcpt, msg, logged_in)] = box.messages
    assert rcpt == ["lead@plant.example", "cto@plant.example"] and logged_in
    assert msg["From"] == "warden@plant.example"
    assert PASSWORD not in _everything_stored(settings, state)


def test_a_report_target_over_starttls_with_a_wrong_password(
    settings: Settings,
    cert: Cert,
    starttls_relay: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box, port = starttls_relay
    monkeypatch.setenv(REPORT_ENV, "nearly-" + PASSWORD)
    state = StateStore.of(settings)
    raw = (
        f"smtp://{USER.replace('@', '%40')}@127.0.0.1:{port}/lead@plant.example"
        f"?starttls=1&ca_file={cert.cert}"
    )
    row = _pack_delivery(raw, "pack-starttls", state)
    assert row["status"] == "failed"
    assert "refused the login" in row["last_error"] and "535" in row["last_error"]
    assert "nearly-" not in _everything_stored(settings, state)
    assert box.messages == []

    monkeypatch.setenv(REPORT_ENV, PASSWORD)
    row = _pack_delivery(raw, "pack-starttls-2", state)
    assert row["status"] == "sent", row["last_error"]
    assert len(box.messages) == 1


def test_a_password_smtplib_cannot_send_is_a_clear_error(
    settings: Settings,
    cert: Cert,
    starttls_relay: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box, port = starttls_relay
    monkeypatch.setenv(NOTIFY_ENV, "pässword")
    state = StateStore.of(settings)
    cfg = Notify(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="starttls",
        smtp_ca_file=str(cert.cert),
        smtp_user=USER,
        email_to=["ops@plant.example"],
        retry_attempts=1,
    )
    [row] = _send_event(state, cfg, "ev-ascii")
    assert row["status"] == "failed" and "must be ASCII" in row["last_error"]
    assert "pässword" not in _everything_stored(settings, state)
    assert box.messages == []


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("smtp://u:hunter2@mail.example:587/a@x.org?starttls=1", "no password in the URL"),
        ("smtps://mail.example/a@x.org?starttls=1", "implicit TLS already"),
        ("smtp://mail.example/a@x.org?ca_file=/etc/ca.pem", "ca_file is for TLS"),
        ("smtp://mail.example/a@x.org?starttls=maybe", "starttls='maybe'"),
        ("smtp://mail.example/a@x.org?tls=1", "unknown option tls"),
        ("smtps://u@mail.example/a@x.org?password_env=A-B", "password_env"),
    ],
)
def test_bad_mail_targets_say_what_is_wrong(raw: str, words: str) -> None:
    with pytest.raises(InputError) as exc:
        delivery.parse_target(raw)
    assert exc.value.field == "report_delivery"
    assert words in exc.value.message
    assert "mail.example" in exc.value.message and "hunter2" not in exc.value.message


@pytest.mark.parametrize(
    ("raw", "target", "port"),
    [
        ("smtps://mail.example/a@x.org", "smtps://mail.example:465/a@x.org", 465),
        (
            "smtp://mail.example/a@x.org?starttls=1",
            "smtp://mail.example:587/a@x.org?starttls=1",
            587,
        ),
        ("smtp://mail.example/a@x.org", "smtp://mail.example:25/a@x.org", 25),
    ],
)
def test_mail_targets_default_to_their_modes_port(raw: str, target: str, port: int) -> None:
    t = delivery.parse_target(raw)
    assert t.target == target and t.relay is not None and t.relay.port == port


def test_a_ca_file_that_cannot_be_read_is_named_in_the_error(
    settings: Settings, tmp_path: Path, starttls_relay: tuple[Mailbox, int]
) -> None:
    box, port = starttls_relay
    state = StateStore.of(settings)
    missing = tmp_path / "no-such-ca.pem"
    cfg = Notify(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="starttls",
        smtp_ca_file=str(missing),
        email_to=["ops@plant.example"],
        retry_attempts=1,
    )
    [row] = _send_event(state, cfg, "ev-no-ca")
    assert row["status"] == "failed" and f"CA file {missing}" in row["last_error"]
    assert box.messages == []
