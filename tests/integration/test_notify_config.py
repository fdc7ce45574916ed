"""Notification targets set from the CLI (into the policy file) and from the environment."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_rollback_transaction import TRIGGER, V11, V12, Sink

from modelwarden.governance import audit, notify, registry
from modelwarden.governance.routes import Upstream
from modelwarden.policy.spec import Policy, default_policy, policy_path
from modelwarden.rollout.rollback import rollback
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore


def test_policy_notify_set_writes_the_policy_file_and_is_audited(
    data_dir: Path, run_cli: Any
) -> None:
    res = run_cli(
        "policy", "notify", "set",
        "--webhook", "http://127.0.0.1:9/hook",
        "--slack", "https://hooks.example/T1/B2",
        "--slack-channel", "#line-b",
        "--email", "oncall@plant.example", "--email", "qa@plant.example",
        "--smtp-host", "mail.plant.example", "--smtp-port", "2525",
        data=data_dir,
    )  # fmt: skip
    assert res.code == 0, res.err
    assert "webhook, slack, email" in res.out
    pol = Policy.for_data(data_dir)
    assert pol.notify.webhook_url == "http://127.0.0.1:9/hook"
    assert pol.notify.slack_webhook_url == "https://hooks.example/T1/B2"
    assert pol.notify.slack_channel == "#line-b"
    assert pol.notify.email_to == ["oncall@plant.example", "qa@plant.example"]
    assert (pol.notify.smtp_host, pol.notify.smtp_port) == ("mail.plant.example", 2525)
    # The rest of the policy is the built-in one, kept whole.
    assert [r.id for r in pol.rules] == [r.id for r in default_policy().rules]
    state = StateStore.at(data_dir)
    [entry] = audit.entries(state, action="policy.notify")
    assert entry.evidence["changed"]["webhook_url"] == {
        "from": None,
        "to": "http://127.0.0.1:9/hook",
    }
    assert entry.evidence["channels"] == ["webhook", "slack", "email"]

    res = run_cli("policy", "notify", "set", "--clear", "slack", data=data_dir)
    assert res.code == 0, res.err
    after = yaml.safe_load(policy_path(data_dir).read_text())["notify"]
    assert after["slack_webhook_url"] is None and after["webhook_url"] == "http://127.0.0.1:9/hook"
    assert len(audit.entries(state, action="policy.notify")) == 2
    state.close()


@pytest.mark.parametrize(
    ("args", "field", "needle"),
    [
        (["--webhook", "ftp://x"], "webhook_url", "not an http:// or https:// URL"),
        (["--email", "not-an-address", "--smtp-host", "h"], "email_to", "not an e-mail address"),
        (["--email", "a@b.example"], "smtp_host", "needs an SMTP server"),
        (["--clear", "pager"], "clear", "--clear takes webhook, slack, email"),
        (["--smtp-host", "h", "--smtp-user", "warden"], "smtp_user", "a login needs TLS"),
        (["--smtp-host", "h", "--smtp-security", "tls"], "smtp_security", "'starttls'"),
        (["--smtp-host", "h", "--smtp-ca-file", "/ca.pem"], "smtp_ca_file", "a CA file is for TLS"),
        ([], None, "nothing to set"),
    ],
)
def test_bad_targets_are_refused_naming_the_field(
    data_dir: Path, run_cli: Any, args: list[str], field: str | None, needle: str
) -> None:
    res = run_cli("policy", "notify", "set", *args, "--format", "json", data=data_dir)
    assert res.code == 2
    text = res.out + res.err
    err = json.loads(text[text.index('{"error"') :].splitlines()[0])["error"]
    assert needle in err["message"]
    assert err.get("field") == field
    assert not policy_path(data_dir).exists()


def test_the_smtp_login_flags_are_kept_and_the_password_is_not(
    data_dir: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELWARDEN_NOTIFY_SMTP_PASSWORD", "never-in-a-file")
    res = run_cli(
        "policy", "notify", "set",
        "--smtp-host", "smtp.office365.com", "--smtp-port", "587",
        "--smtp-security", "starttls", "--smtp-user", "warden@plant.example",
        "--email", "oncall@plant.example",
        data=data_dir,
    )  # fmt: skip
    assert res.code == 0, res.err
    n = Policy.for_data(data_dir).notify
    assert (n.smtp_security, n.smtp_user, n.smtp_plain_login) == (
        "starttls",
        "warden@plant.example",
        False,
    )
    assert "never-in-a-file" not in policy_path(data_dir).read_text()
    res = run_cli("policy", "notify", "set", "--smtp-security", "none", data=data_dir)
    assert res.code == 2 and "smtp_plain_login" in res.out + res.err
    res = run_cli(
        "policy", "notify", "set", "--smtp-security", "none", "--smtp-plain-login", data=data_dir
    )
    assert res.code == 0, res.err
    assert Policy.for_data(data_dir).notify.smtp_plain_login is True


def test_the_environment_overrides_the_policy_file(
    data_dir: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("policy", "notify", "set", "--webhook", "http://a/1", data=data_dir).code == 0
    monkeypatch.setenv("MODELWARDEN_NOTIFY_WEBHOOK_URL", "http://b/2")
    monkeypatch.setenv("MODELWARDEN_NOTIFY_EMAIL_TO", "x@plant.example, y@plant.example")
    monkeypatch.setenv("MODELWARDEN_NOTIFY_SMTP_HOST", "127.0.0.1")
    s = Settings.from_env(data_dir)
    cfg = notify.targets(s, Policy.for_data(data_dir))
    assert cfg.webhook_url == "http://b/2"
    assert cfg.email_to == ["x@plant.example", "y@plant.example"]
    assert cfg.channels() == ["webhook", "email"]
    res = run_cli("policy", "notify", "show", data=data_dir)
    assert res.code == 0, res.err
    assert "http://b/2" in res.out and "MODELWARDEN_NOTIFY_WEBHOOK_URL" in res.out
    monkeypatch.setenv("MODELWARDEN_NOTIFY_SLACK_WEBHOOK_URL", "gopher://x")
    with pytest.raises(Exception, match="MODELWARDEN_NOTIFY_SLACK_WEBHOOK_URL"):
        notify.targets(Settings.from_env(data_dir), Policy.for_data(data_dir))


def test_a_rollback_notifies_the_webhook_set_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = Sink()
    monkeypatch.setenv("MODELWARDEN_NOTIFY_WEBHOOK_URL", sink.url)
    settings = Settings.from_env(tmp_path / "data", embedder="hashing")
    state = StateStore.at(settings.data_dir)
    registry.add(state, V11, "http://127.0.0.1:9101", "cli:ops", status="stable")
    registry.add(state, V12, "http://127.0.0.1:9102", "cli:ops")
    try:
        notifier = notify.Notifier(state, idle_s=0.05).start()
        res = rollback(
            settings,
            V12,
            Upstream(version=V11, url="http://127.0.0.1:9101"),
            TRIGGER,
            policy=default_policy(),  # no target in the policy itself
            state=state,
            notifier=notifier,
        )
        deadline = time.monotonic() + 10
        while not sink.bodies and time.monotonic() < deadline:
            time.sleep(0.05)
        notifier.stop()
        assert res.incident.steps["notify"]["detail"]["channels"] == ["webhook"]
        assert sink.bodies and sink.bodies[0]["incident_id"] == res.incident.id
        assert sink.bodies[0]["event"] == "modelwarden.rollback"
    finally:
        sink.close()
        state.close()
