"""Sending e-mail through an SMTP relay: plain, STARTTLS or implicit TLS, with an optional login.

The one place ModelWarden talks SMTP: the SOP's notifications (``policy.notify``) and the weekly
pack's ``smtp://`` targets both go through the notification outbox, which sends with
:func:`send`.

A relay is described by data that is safe to keep (in a policy file, an outbox row, the audit
log): host, port, ``security`` (``none``, ``starttls`` or ``ssl``), the login's user, an optional
CA file to trust instead of the system's authorities, and the *name* of the environment variable
that holds the password. The password itself is read when a message is sent, from that variable,
else from the file the variable ``<NAME>_FILE`` names (a container or systemd secret). It is
never written anywhere, and it is taken out of any error text.

A login over a connection without TLS is refused unless ``plain_login`` allows it: the password
would cross the network in clear.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

SECURITY = ("none", "starttls", "ssl")
DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MailError(Exception):
    """A message could not be sent; the text says why (never the password)."""


def security_problem(security: str) -> str | None:
    if security not in SECURITY:
        return f"{security!r} is not a security mode: use none, starttls or ssl"
    return None


def login_problem(security: str, plain_login: bool) -> str | None:
    """Why a login may not be used with this security, or None."""
    if security == "none" and not plain_login:
        return (
            "a login needs TLS: set the security to starttls or ssl (sending the password in "
            "clear needs plain_login)"
        )
    return None


def env_name_problem(name: str) -> str | None:
    if not _ENV_NAME.fullmatch(name):
        return f"{name!r} is not an environment variable name"
    return None


@dataclass(frozen=True)
class Relay:
    """Where and how to send; nothing in it is secret."""

    host: str
    port: int
    security: str = "none"
    user: str | None = None
    password_env: str | None = None
    ca_file: str | None = None
    plain_login: bool = False

    def payload(self) -> dict[str, Any]:
        """The fields an outbox row keeps."""
        return asdict(self)

    @classmethod
    def of_payload(cls, payload: dict[str, Any]) -> Relay:
        """The relay of an outbox row (rows written before TLS existed send as before)."""
        return cls(
            host=str(payload["host"]),
            port=int(payload["port"]),
            security=str(payload.get("security") or "none"),
            user=payload.get("user") or None,
            password_env=payload.get("password_env") or None,
            ca_file=payload.get("ca_file") or None,
            plain_login=bool(payload.get("plain_login")),
        )

    def target(self, to: list[str] | tuple[str, ...]) -> str:
        """The delivery's name in the outbox: ``smtps://user@host:465/a@x,b@y``, where
        ``smtp://…?starttls=1`` is STARTTLS and ``smtps://`` implicit TLS."""
        scheme = "smtps" if self.security == "ssl" else "smtp"
        who = f"{self.user}@" if self.user else ""
        query = "?starttls=1" if self.security == "starttls" else ""
        return f"{scheme}://{who}{self.host}:{self.port}/" + ",".join(to) + query


def password(relay: Relay) -> str:
    """The login's password: ``$NAME``, else the contents of the file ``$NAME_FILE`` names."""
    name = relay.password_env
    if not name:
        raise MailError(f"no password for SMTP user {relay.user!r}: no variable is named for it")
    value = os.environ.get(name)
    if value:
        return value
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise MailError(f"{name}_FILE={path}: cannot read it ({exc.strerror})") from None
        if value:
            return value
        raise MailError(f"{name}_FILE={path}: the file is empty")
    raise MailError(
        f"no password for SMTP user {relay.user!r}: set {name}, or {name}_FILE to a file holding it"
    )


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying context: the system's authorities, or only those in ``ca_file``."""
    if not ca_file:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise MailError(f"CA file {ca_file}: cannot use it ({exc})") from None


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def send(relay: Relay, msg: EmailMessage, timeout: float) -> None:
    """Send ``msg`` through ``relay``; raises :class:`MailError` with the reason on failure."""
    if problem := security_problem(relay.security):
        raise MailError(problem)
    if relay.user and (problem := login_problem(relay.security, relay.plain_login)):
        raise MailError(f"SMTP user {relay.user!r}: {problem}")
    secret = password(relay) if relay.user else None
    ctx = tls_context(relay.ca_file) if relay.security != "none" else None
    try:
        smtp: smtplib.SMTP
        if relay.security == "ssl":
            smtp = smtplib.SMTP_SSL(relay.host, relay.port, timeout=timeout, context=ctx)
        else:
            smtp = smtplib.SMTP(relay.host, relay.port, timeout=timeout)
        with smtp:
            if relay.security == "starttls":
                try:
                    smtp.starttls(context=ctx)
                except smtplib.SMTPNotSupportedError:
                    raise MailError(
                        f"{relay.host}:{relay.port} does not offer STARTTLS; nothing was sent"
                    ) from None
            if relay.user and secret is not None:
                try:
                    smtp.login(relay.user, secret)
                except smtplib.SMTPAuthenticationError as exc:
                    err = exc.smtp_error
                    reply = err.decode("utf-8", "replace") if isinstance(err, bytes) else err
                    raise MailError(
                        _scrub(
                            f"{relay.host}:{relay.port} refused the login of {relay.user!r}: "
                            f"{exc.smtp_code} {reply}",
                            secret,
                        )
                    ) from None
                except UnicodeEncodeError:
                    raise MailError(
                        f"SMTP user {relay.user!r}: the user name and password must be ASCII "
                        "(Python's SMTP login sends no other characters)"
                    ) from None
            smtp.send_message(msg)
    except MailError:
        raise
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(_scrub(f"{type(exc).__name__}: {exc}", secret)) from None


__all__ = [
    "DEFAULT_PORTS",
    "SECURITY",
    "MailError",
    "Relay",
    "env_name_problem",
    "login_problem",
    "password",
    "security_problem",
    "send",
    "tls_context",
]
