"""Operations commands: registry, audit, incidents, notify, policy, sop, rollout, shadow, export.

Each command parses its options, calls one service function (governance, rollout, policy or
report) and prints the answer; the services are imported inside the commands to keep --help fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from modelwarden.cli.app import (
    FORMAT_OPTION,
    Format,
    app,
    console,
    err_console,
    handle_errors,
    key_option,
    print_json,
    print_table,
    progress_bar,
    route_rows,
    settings,
    state_store,
)
from modelwarden.cli.options import (
    NOW_OPTION,
    POLICY_OPTION,
    SINCE_OPTION,
    UNTIL_OPTION,
    actor,
    notify_wait_option,
    output,
    parse_time_option,
    reason_option,
    short,
    when,
    write_text,
)
from modelwarden.errors import EXIT_CHECK_FAILED

registry_app = typer.Typer(
    help="Model versions: lifecycle, quarantine and release approvals.", no_args_is_help=True
)
audit_app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)
incidents_app = typer.Typer(
    help="Incidents opened by rollbacks, with their timeline and RCA logs.", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")
app.add_typer(audit_app, name="audit")
app.add_typer(incidents_app, name="incidents")
notify_app = typer.Typer(
    help="The notification outbox: deliveries, retries and channels that are down.",
    no_args_is_help=True,
)
app.add_typer(notify_app, name="notify")


# ---- registry -----------------------------------------------------------------------------------
def _version_row(v: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": v["version"],
        "status": v["status"],
        "endpoint": v["endpoint"],
        "updated": when(v["updated_at"]),
        "quarantine reason": v["quarantine_reason"],
    }


@registry_app.command("add")
@handle_errors
def registry_add(
    version: str = typer.Argument(..., help="Model version, e.g. sop-assistant-v1.2."),
    endpoint: str = typer.Option(
        ..., "--endpoint", help="Base URL of its OpenAI-compatible server."
    ),
    notes: str = typer.Option(None, "--notes"),
    stable: bool = typer.Option(
        False,
        "--stable",
        help="Register as stable (only when no version "
        "is: the first version of an installation). Routes it.",
    ),
    key: str = key_option(required=True),
    format: Format = FORMAT_OPTION,
) -> None:
    """Register a model version (in staging); needs an operator or admin key."""
    from modelwarden.governance import service

    state = state_store()
    who = service.authorized_actor(state, key, "registry", version)
    info = service.add_version(state, version, endpoint, who, notes, stable)
    output(
        info,
        format,
        lambda: console.print(
            f"registered {info['version']} ({info['status']}) at {info['endpoint']}"
        ),
    )


@registry_app.command("list")
@handle_errors
def registry_list(
    status: str = typer.Option(None, "--status", help="Only versions in this status."),
    format: Format = FORMAT_OPTION,
) -> None:
    """Every registered version and its status."""
    from modelwarden.governance import service

    versions = service.list_versions(state_store(), status)
    output(
        versions,
        format,
        lambda: print_table([_version_row(v) for v in versions], title="Model versions"),
    )


@registry_app.command("show")
@handle_errors
def registry_show(version: str = typer.Argument(...), format: Format = FORMAT_OPTION) -> None:
    """A version: status, release requests, evidence and its audit trail."""
    from modelwarden.governance import service

    detail = service.version_detail(state_store(), version)
    output(detail, format, lambda: _print_version_detail(version, detail))


def _print_version_detail(version: str, d: dict[str, Any]) -> None:
    print_table([_version_row(d["version"])], title=f"{version}")
    if d["release_requests"]:
        print_table(
            [
                {
                    "id": r["id"],
                    "status": r["status"],
                    "requested": when(r["requested_at"]),
                    "by": r["requested_by"],
                    "decided by": r["decided_by"],
                    "decided": when(r["decided_at"]),
                }
                for r in d["release_requests"]
            ],
            title="Release requests",
        )
    if d["evidence"]:
        print_table(
            [
                {
                    "id": e["id"],
                    "kind": e["kind"],
                    "at": when(e["created_at"]),
                    "by": e["actor"],
                    "summary": short((e["data"] or {}).get("summary", "")),
                }
                for e in d["evidence"]
            ],
            title="Evidence",
        )
    print_table(
        [
            {
                "seq": e["seq"],
                "at": when(e["at"]),
                "actor": e["actor"],
                "action": e["action"],
                "reason": e["reason"],
            }
            for e in d["audit"]
        ],
        title="Audit trail",
    )


@registry_app.command("promote")
@handle_errors
def registry_promote(
    version: str = typer.Argument(...),
    to: str = typer.Option(..., "--to", help="shadow, canary or stable"),
    reason: str = reason_option(),
    key: str = key_option(),
    format: Format = FORMAT_OPTION,
) -> None:
    """Move a version forward in its lifecycle; a quarantined version is refused."""
    from modelwarden.rollout import service as rollout_service

    state = state_store()
    info = rollout_service.promote_version(state, version, to, actor(state, key), reason)
    output(info.to_dict(), format, lambda: console.print(f"{info.version} is now {info.status}"))


@registry_app.command("quarantine")
@handle_errors
def registry_quarantine(
    version: str = typer.Argument(...),
    reason: str = reason_option(required=True),
    key: str = key_option(required=True),
    format: Format = FORMAT_OPTION,
) -> None:
    """Quarantine a version and take it out of the routes (canary and shadow); needs an
    operator or admin key."""
    from modelwarden.governance import service

    state = state_store()
    who = service.authorized_actor(state, key, "registry", version)
    info = service.quarantine_version(state, version, reason, who)
    output(
        info,
        format,
        lambda: console.print(
            f"{version} is quarantined" + ("" if info["changed"] else " (it was already)")
        ),
    )


@registry_app.command("request-release")
@handle_errors
def registry_request_release(
    version: str = typer.Argument(...),
    key: str = key_option(required=True),
    reason: str = reason_option(help="What was fixed."),
    format: Format = FORMAT_OPTION,
) -> None:
    """Ask for a quarantined version's release; a different key with the approver role approves."""
    from modelwarden.governance import registry, service

    state = state_store()
    req = service.request_release(state, version, registry.identify(state, key), reason)
    output(
        req,
        format,
        lambda: console.print(
            f"release request {req['id']} for {version} opened by {req['requested_by']}; "
            f"an approver approves with: modelwarden registry approve {version} "
            "--eval-run RUN --key KEY"
        ),
    )


@registry_app.command("approve")
@handle_errors
def registry_approve(
    version: str = typer.Argument(...),
    eval_run: str = typer.Option(
        ...,
        "--eval-run",
        help="Evaluation run of this version (id or name), made after the quarantine.",
    ),
    key: str = key_option(required=True),
    baseline_run: str = typer.Option(
        None,
        "--baseline-run",
        help="Run to compare with; default: the newest run of the stable version.",
    ),
    gate: Path = typer.Option(
        None, "--gate", help="Gate YAML; default: no safety or forbidden content violations."
    ),
    note: str = typer.Option("", "--note"),
    format: Format = FORMAT_OPTION,
) -> None:
    """Release a quarantined version back to staging if its evaluation passes the gate.

    Exit 0 approved, 1 the gate failed (nothing changes), 2 bad input or not allowed.
    """
    from modelwarden.governance import registry, service

    state = state_store()
    res = service.approve_release(
        state, version, registry.identify(state, key), eval_run, baseline_run, gate, note
    )
    if format == Format.json:
        print_json(res.to_dict())
    else:
        c = res.comparison
        verdict = "passed" if c["passed"] else "FAILED"
        console.print(
            f"gate {c['gate']} {verdict}: run {c['eval_run_name']} against "
            f"{c['baseline_run_name']} (comparison {c['comparison_id']})"
        )
        if res.approved:
            console.print(f"{version} released to staging by {res.request.decided_by}")
        else:
            err_console.print(f"{version} stays quarantined: {'; '.join(res.reasons)}")
    if not res.approved:
        raise typer.Exit(EXIT_CHECK_FAILED)


@registry_app.command("retire")
@handle_errors
def registry_retire(
    version: str = typer.Argument(...),
    reason: str = reason_option(),
    key: str = key_option(),
    format: Format = FORMAT_OPTION,
) -> None:
    """Retire a version that no route uses."""
    from modelwarden.governance import service

    state = state_store()
    info = service.retire_version(state, version, actor(state, key), reason)
    output(info, format, lambda: console.print(f"{version} retired"))


@registry_app.command("set-endpoint")
@handle_errors
def registry_set_endpoint(
    version: str = typer.Argument(...),
    endpoint: str = typer.Argument(..., help="New base URL."),
    reason: str = reason_option(),
    key: str = key_option(),
    format: Format = FORMAT_OPTION,
) -> None:
    """Point a version that serves no traffic at another server."""
    from modelwarden.governance import service

    state = state_store()
    info = service.set_version_endpoint(state, version, endpoint, actor(state, key), reason)
    output(info, format, lambda: console.print(f"{version} now at {info['endpoint']}"))


# ---- audit --------------------------------------------------------------------------------------
@audit_app.command("verify")
@handle_errors
def audit_verify(
    checkpoints: Path = typer.Option(
        None,
        "--checkpoints",
        help="Checkpoint file (default SECRETS/audit-checkpoints.jsonl or "
        "MODELWARDEN_AUDIT_CHECKPOINTS).",
    ),
    format: Format = FORMAT_OPTION,
) -> None:
    """Recompute the hash chain and its keyed MACs, and compare the log with the last signed
    checkpoint. Exit 1 naming the first entry that does not fit."""
    from modelwarden.governance import service

    res = service.verify_audit(state_store(), checkpoints)
    if format == Format.json:
        print_json(res.to_dict())
    elif res.ok:
        console.print(
            f"audit log intact: {res.entries} entries, head seq {res.head_seq} hash {res.head_hash}"
        )
        if res.checkpoint:
            console.print(
                f"matches the checkpoint of {res.checkpoint['at']} (seq {res.checkpoint['seq']})"
            )
        for note in res.notes:
            err_console.print(f"note: {note}", highlight=False)
    else:
        err_console.print(
            f"audit log BROKEN at seq {res.first_bad_seq}: {res.problem}", highlight=False
        )
    if not res.ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


@audit_app.command("checkpoint")
@handle_errors
def audit_checkpoint(
    file: Path = typer.Option(None, "--file", help="Append to this file instead of the default."),
    policy_file: Path = typer.Option(
        None, "--policy", help="Send it to this policy's notification channels too."
    ),
    format: Format = FORMAT_OPTION,
) -> None:
    """Sign the audit log's head with the audit key and export it (file, notification channels).

    Run it on a schedule (cron): `audit verify` finds a truncated tail against the last one.
    """
    from modelwarden.governance import service

    out = service.audit_checkpoint(settings(), state_store(), file, policy_file)
    output(
        out,
        format,
        lambda: console.print(
            f"checkpoint seq {out['seq']} written to {out['file']}", highlight=False
        ),
    )


@audit_app.command("list")
@handle_errors
def audit_list(
    subject: str = typer.Option(None, "--subject", help="A version, an incident id, routes..."),
    action: str = typer.Option(None, "--action", help="e.g. registry.* or rollback.routes"),
    limit: int = typer.Option(50, "--limit", "-n", min=1),
    format: Format = FORMAT_OPTION,
) -> None:
    """Audit entries, newest first."""
    from modelwarden.governance import service

    rows = service.audit_entries(state_store(), subject, action, limit)
    output(
        rows,
        format,
        lambda: print_table(
            [
                {
                    "seq": e["seq"],
                    "at": when(e["at"]),
                    "actor": e["actor"],
                    "action": e["action"],
                    "subject": e["subject"],
                    "reason": short(e["reason"], 80),
                    "hash": e["hash"][:12],
                }
                for e in rows
            ],
            title="Audit log",
        ),
    )


# ---- incidents ----------------------------------------------------------------------------------
@incidents_app.command("list")
@handle_errors
def incidents_list(
    status: str = typer.Option(None, "--status", help="open, mitigated or closed"),
    format: Format = FORMAT_OPTION,
) -> None:
    """Incidents, newest first."""
    from modelwarden.governance import service

    items = service.list_incidents(state_store(), status)
    output(
        items,
        format,
        lambda: print_table(
            [
                {
                    "id": i["id"],
                    "status": i["status"],
                    "detected": when(i["detected_at"]),
                    "version": i["version"],
                    "rolled back to": i["stable_version"],
                    "rule": i["rule_id"],
                    "scope": i["trigger"].get("scope"),
                    "value": i["trigger"].get("value"),
                    "baseline": i["trigger"].get("baseline_value"),
                    "n": i["trigger"].get("n"),
                    "threshold": i["trigger"].get("threshold"),
                }
                for i in items
            ],
            title="Incidents",
        ),
    )


@incidents_app.command("show")
@handle_errors
def incidents_show(incident_id: str = typer.Argument(...), format: Format = FORMAT_OPTION) -> None:
    """One incident: its trigger, timeline, notifications and RCA files."""
    from modelwarden.governance import service

    inc = service.incident_detail(state_store(), incident_id)
    output(inc, format, lambda: _print_incident(inc))


def _print_incident(inc: dict[str, Any]) -> None:
    t = inc["trigger"]
    print_table(
        [
            {"field": k, "value": v}
            for k, v in (
                ("incident", inc["id"]),
                ("status", inc["status"]),
                ("version", inc["version"]),
                ("rolled back to", inc["stable_version"]),
                ("rollout", inc["rollout_id"]),
                ("rule", f"{inc['rule_id']}: {t.get('title', '')}"),
                ("scope", t.get("scope")),
                ("value", t.get("value")),
                ("baseline", f"{t.get('baseline_value')} ({t.get('baseline', '—')})"),
                ("n", f"{t.get('n')} / {t.get('n_baseline')} baseline"),
                ("threshold", f"{t.get('threshold')} ({t.get('comparator', '—')})"),
                ("p-value", t.get("p_value")),
                ("detected", when(inc["detected_at"])),
                ("RCA logs", inc["rca_dir"]),
                ("note", inc["note"]),
            )
        ],
        title=f"Incident {inc['id']}",
    )
    print_table(
        [
            {"at": when(e["at"]), "event": e["event"], "detail": e["detail"]}
            for e in inc["timeline"]
        ],
        title="Timeline",
    )
    if inc["notifications"]:
        print_table([_note_row(n) for n in inc["notifications"]], title="Notifications")


def _note_row(n: dict[str, Any]) -> dict[str, Any]:
    # imported here: keeps --help fast, like the commands
    from modelwarden.governance import notify

    return {
        "channel": n["channel"],
        "target": notify.redact_target(n["target"]),
        "status": n["status"],
        "attempts": f"{n['attempts']}/{n['max_attempts']}",
        "next try": when(n["next_attempt_at"]) if n["status"] == "pending" else "",
        "last error": n["last_error"] or "",
    }


@incidents_app.command("close")
@handle_errors
def incidents_close(
    incident_id: str = typer.Argument(...),
    note: str = typer.Option(..., "--note", help="Root cause and resolution."),
    key: str = key_option(),
    format: Format = FORMAT_OPTION,
) -> None:
    """Close an incident once its root cause is understood."""
    from modelwarden.governance import service

    state = state_store()
    inc = service.close_incident(state, incident_id, actor(state, key), note)
    output(inc, format, lambda: console.print(f"{inc['id']} closed"))


@incidents_app.command("notify")
@handle_errors
def incidents_notify(format: Format = FORMAT_OPTION) -> None:
    """Deliver every notification that is due now (the server does this on its own)."""
    from modelwarden.governance import service

    done = service.deliver_notifications(state_store())
    rows = done["deliveries"]
    output(rows, format, lambda: print_table(rows, title="Deliveries"))
    if not done["all_sent"]:
        raise typer.Exit(EXIT_CHECK_FAILED)


@notify_app.command("status")
@handle_errors
def notify_status(
    status: str | None = typer.Option(None, help="Only pending, sent or failed deliveries."),
    limit: int = typer.Option(50, help="Newest deliveries shown."),
    format: Format = FORMAT_OPTION,
) -> None:
    """Deliveries in the outbox; exit 1 while any is being retried or has failed for good."""
    from modelwarden.governance import service

    out = service.notification_status(state_store(), status, limit)
    output(out, format, lambda: _print_outbox(out))
    if not out["healthy"]:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _print_outbox(out: dict[str, Any]) -> None:
    c = out["counts"]
    console.print(
        f"{c['sent']} sent, {c['pending']} pending ({c['retrying']} being retried), "
        f"{c['failed']} failed for good; {c['failed_attempts']} failed attempt(s) so far"
    )
    print_table(
        [{"id": n["id"], "event": n["event"], **_note_row(n)} for n in out["notifications"]],
        title="Notifications",
    )


# ---- policy and sop -----------------------------------------------------------------------------
policy_app = typer.Typer(
    help="The SOP policy: write it, check history against it, replay it.", no_args_is_help=True
)
sop_app = typer.Typer(
    help="The SOP document, rendered from the policy the engine enforces.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")
app.add_typer(sop_app, name="sop")


@policy_app.command("check")
@handle_errors
def policy_check(
    since: str = SINCE_OPTION,
    until: str = UNTIL_OPTION,
    policy_file: Path = POLICY_OPTION,
    step: str = typer.Option("15m", "--step", help="Evaluate every this long (15m, 1h)."),
    stable: str = typer.Option(
        None, "--stable", help="The stable version; default: the one with the most requests."
    ),
    candidate: list[str] = typer.Option(None, "--candidate", help="Only these versions."),
    format: Format = FORMAT_OPTION,
) -> None:
    """Which rules would have fired over stored history, when, and for which candidate.

    Exit 1 if any rule would have fired.
    """
    _policy_history("check", "checking", since, until, policy_file, step, stable, candidate, format)


def _print_check(run: Any) -> None:
    pol, start, end = run.policy, run.start, run.end
    console.print(
        f"{pol.sop_id}: {len(pol.rules)} rules, {start:%Y-%m-%d %H:%M} → "
        f"{end:%Y-%m-%d %H:%M} every {run.step}; watched: " + "; ".join(run.watched)
    )
    print_table(
        [
            {
                "first": when(r["first_at"]),
                "last": when(r["last_at"]),
                "ticks": r["ticks"],
                "candidate": r["candidate"],
                "rule": r["rule_id"],
                "scope": r["scope"],
                "severity": r["severity"],
                "value": r["value"],
                "baseline": r["baseline_value"],
                "n": r["n"],
                "n base": r["n_baseline"],
                "threshold": r["threshold"],
                "p": r["p_value"],
            }
            for r in run.found
        ],
        title="Rules that would have fired",
    )


@policy_app.command("replay")
@handle_errors
def policy_replay(
    since: str = SINCE_OPTION,
    until: str = UNTIL_OPTION,
    policy_file: Path = POLICY_OPTION,
    step: str = typer.Option("15m", "--step", help="The controller's tick interval to play."),
    stable: str = typer.Option(None, "--stable"),
    candidate: list[str] = typer.Option(None, "--candidate"),
    format: Format = FORMAT_OPTION,
) -> None:
    """Replay history as if live: each rollback the policy would have made, and its time to detect.

    Exit 1 if any rollback would have happened.
    """
    _policy_history(
        "replay", "replaying", since, until, policy_file, step, stable, candidate, format
    )


def _print_replay(run: Any) -> None:
    print_table(
        [
            {
                "detected": when(r["detected_at"]),
                "candidate": r["candidate"],
                "against": r["stable"] or "its previous window",
                "rule": r["rule_id"],
                "scope": r["scope"],
                "exposed since": when(r["exposed_since"]),
                "time to detect h": r["time_to_detect_h"],
                "value": r["value"],
                "baseline": r["baseline_value"],
                "n": r["n"],
                "threshold": r["threshold"],
            }
            for r in run.found
        ],
        title=f"Rollbacks {run.policy.sop_id} would have made ({run.start:%Y-%m-%d} → "
        f"{run.end:%Y-%m-%d}, every {run.step})",
    )


def _policy_history(
    mode: str,
    doing: str,
    since: str | None,
    until: str | None,
    policy_file: Path | None,
    step: str,
    stable: str | None,
    candidate: list[str] | None,
    format: Format,
) -> None:
    """``policy check`` and ``policy replay``: run, render; exit 1 on any finding."""
    from modelwarden.policy import service

    with progress_bar(doing, enabled=format == Format.table) as bar:
        run = service.run_history(
            settings(),
            mode,
            since,
            until,
            policy_file,
            step,
            stable,
            candidate or None,
            progress=bar.advance,
            on_total=bar.total,
        )
    render = _print_check if mode == "check" else _print_replay
    output(run.to_dict(), format, lambda: render(run))
    if run.found:
        raise typer.Exit(EXIT_CHECK_FAILED)


@policy_app.command("init")
@handle_errors
def policy_init(
    out: Path = typer.Option(
        None, "--out", "-o", help="Default: DATA/policy.yaml, the file the controller enforces."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write the default policy (SOP-MLOPS-003 with its five trigger conditions) as YAML."""
    from modelwarden.policy import service

    path = service.write_default_policy(settings(), out, force)
    console.print(f"wrote {path}")


@policy_app.command("show")
@handle_errors
def policy_show(policy_file: Path = POLICY_OPTION, format: Format = FORMAT_OPTION) -> None:
    """The policy in force: its rules as a table (or the whole policy as JSON)."""
    from modelwarden.policy import service

    pol = service.load_policy(settings(), policy_file)
    output(
        pol.model_dump(mode="json"),
        format,
        lambda: print_table(
            [
                {
                    "rule": r.id,
                    "metric": r.metric,
                    "comparator": r.comparator,
                    "threshold": r.threshold,
                    "window": r.window,
                    "baseline": r.baseline,
                    "scope": ",".join(r.scope),
                    "min n": r.min_samples,
                    "alpha": r.alpha,
                    "sustain": r.sustain,
                    "severity": r.severity,
                }
                for r in pol.rules
            ],
            title=f"{pol.sop_id}: {pol.title}",
        ),
    )


@policy_app.command("set")
@handle_errors
def policy_set(
    file: Path = typer.Argument(None, help="Policy YAML; default DATA/policy.yaml, else built-in."),
    reason: str = typer.Option("", "--reason", help="Why (goes into the audit log)."),
    key: str = key_option(),
    format: Format = FORMAT_OPTION,
) -> None:
    """Store a policy in the state store: every instance on it enforces that one from now on."""
    from modelwarden.governance.policies import set_policy

    state = state_store()
    cur, new = set_policy(settings(), state, actor(state, key), path=file, reason=reason)
    said = "now in force" if new else "already in force: nothing stored"
    output(
        {**cur.to_dict(), "changed": new},
        format,
        lambda: console.print(f"{cur.policy.sop_id} version {cur.version} {said}", highlight=False),
    )


policy_notify_app = typer.Typer(
    help="Where incident notifications go (webhook, Slack, e-mail).", no_args_is_help=True
)
policy_app.add_typer(policy_notify_app, name="notify")


def _print_targets(view: dict[str, Any]) -> None:
    """The targets in force, each with where its value comes from."""
    cfg = {k: v for k, v in view["targets"].items() if k != "channels"}
    print_table(
        [
            {
                "setting": k,
                "value": ", ".join(v) if isinstance(v, list) else v,
                "from": f"MODELWARDEN_NOTIFY_{k.upper()}" if k in view["overridden"] else "policy",
            }
            for k, v in cfg.items()
        ],
        title="Notification targets",
    )


@policy_notify_app.command("show")
@handle_errors
def notify_show(policy_file: Path = POLICY_OPTION, format: Format = FORMAT_OPTION) -> None:
    """The notification targets in force: the policy's, with MODELWARDEN_NOTIFY_* over them."""
    from modelwarden.governance import service

    view = service.notification_targets(settings(), policy_file)
    output(view["targets"], format, lambda: _print_targets(view))


@policy_notify_app.command("set")
@handle_errors
def notify_set(
    webhook: str = typer.Option(None, "--webhook", help="URL that gets a JSON POST per incident."),
    slack: str = typer.Option(None, "--slack", help="Slack-compatible incoming webhook URL."),
    slack_channel: str = typer.Option(None, "--slack-channel", help="e.g. #manufacturing-ai"),
    email: list[str] = typer.Option(
        None, "--email", help="Recipient (repeatable; replaces the list)."
    ),
    email_from: str = typer.Option(None, "--email-from"),
    smtp_host: str = typer.Option(None, "--smtp-host"),
    smtp_port: int = typer.Option(None, "--smtp-port", min=1, max=65535),
    smtp_security: str = typer.Option(
        None,
        "--smtp-security",
        help="none (plain SMTP), starttls (port 587) or ssl (implicit TLS, port 465).",
    ),
    smtp_user: str = typer.Option(
        None,
        "--smtp-user",
        help="Login user; the password is read when sending from "
        "MODELWARDEN_NOTIFY_SMTP_PASSWORD (or the file MODELWARDEN_NOTIFY_SMTP_PASSWORD_FILE "
        "names), never stored.",
    ),
    smtp_ca_file: str = typer.Option(
        None, "--smtp-ca-file", help="PEM file of the authorities to trust instead of the system's."
    ),
    smtp_plain_login: bool = typer.Option(
        None,
        "--smtp-plain-login/--no-smtp-plain-login",
        help="Allow the login over a connection without TLS (the password crosses in clear).",
    ),
    clear: list[str] = typer.Option(
        None, "--clear", help="Switch a channel off: webhook, slack or email (repeatable)."
    ),
    policy_file: Path = typer.Option(
        None, "--policy", help="Policy YAML to change; default DATA/policy.yaml."
    ),
    key: str = key_option(),
    format: Format = FORMAT_OPTION,
) -> None:
    """Set notification targets in the policy file (written from the built-in policy if absent).

    The change is audited. MODELWARDEN_NOTIFY_* variables still override the file at run time.
    """
    from modelwarden.governance import service

    changes = {
        "webhook_url": webhook,
        "slack_webhook_url": slack,
        "slack_channel": slack_channel,
        "email_to": email or None,
        "email_from": email_from,
        "smtp_host": smtp_host,
        "smtp_port": smtp_port,
        "smtp_security": smtp_security,
        "smtp_user": smtp_user,
        "smtp_ca_file": smtp_ca_file,
        "smtp_plain_login": smtp_plain_login,
    }
    state = state_store()
    view = service.set_notification_targets(
        settings(), state, changes, actor(state, key), clear or None, policy_file
    )
    if format == Format.json:
        print_json(view["saved"])
        return
    _print_targets(view)
    console.print("channels: " + (", ".join(view["saved"]["channels"]) or "none"))


@sop_app.command("render")
@handle_errors
def sop_render(
    policy_file: Path = POLICY_OPTION,
    out: Path = typer.Option(None, "--out", "-o", help="Write Markdown here instead of stdout."),
) -> None:
    """The SOP document in Markdown, generated from the policy file the engine enforces."""
    from modelwarden.policy import service

    text = service.sop_markdown(settings(), policy_file)
    if out is None:
        print(text)
        return
    write_text(out, text)
    console.print(f"wrote {out}")


# ---- rollout ------------------------------------------------------------------------------------
rollout_app = typer.Typer(
    help="Canary rollouts: steps, holds, the judge, the guard phase.", no_args_is_help=True
)
app.add_typer(rollout_app, name="rollout")


def _rollout_rows(d: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        ("rollout", d["id"]),
        ("version", d["version"]),
        ("status", d["status"]),
        ("stable", d["stable_version"]),
        ("step", f"{d['step'] + 1} of {d['steps']}: {d['step_label']}"),
        ("step started", when(d["step_started_at"])),
        ("hold until", when(d["hold_until"])),
        ("looks at this step", d["looks"]),
        ("route table", d["route_version"]),
        ("last tick", when(d["last_tick_at"])),
        ("plan", d["plan_description"]),
    ]
    if d.get("last_verdict"):
        rows.append(("last verdict", d["last_verdict"].get("verdict")))
    if d.get("incident_id"):
        rows.append(("incident", d["incident_id"]))
    if d.get("end_reason"):
        rows.append(("ended", f"{when(d['ended_at'])}: {d['end_reason']}"))
    fired = [
        f"{x.get('rule_id')}@{x.get('scope')}"
        for x in (d.get("engine_state") or {}).get("rules", [])
        if x.get("status") == "FIRE"
    ]
    if fired:
        rows.append(("fired at the last tick", ", ".join(fired)))
    return [{"field": k, "value": v} for k, v in rows]


def _print_rollout(d: dict[str, Any] | None, format: Format) -> None:
    if format == Format.json:
        print_json(d)
    elif d is None:
        console.print("no rollout yet; start one with: modelwarden rollout start VERSION")
    else:
        print_table(_rollout_rows(d), title=f"Rollout {d['id']}")
        if d.get("routes"):
            print_table(
                route_rows(d["routes"]),
                title=f"Routes now (version {d['routes']['version']}, set by "
                f"{d['routes'].get('created_by') or '—'})",
            )
        verdict = d.get("last_verdict") or {}
        if verdict.get("gates"):
            print_table(
                [
                    {
                        "gate": g["metric"],
                        "verdict": g["verdict"],
                        "n canary": g["n_canary"],
                        "n stable": g["n_stable"],
                        "canary": g["canary_value"],
                        "stable": g["stable_value"],
                        "worse by": g["worsening"],
                        "upper": g["upper"],
                        "margin": g["margin"],
                        "p": g["p_value"],
                    }
                    for g in verdict["gates"]
                ],
                title="Last judgement",
            )


@rollout_app.command("start")
@handle_errors
def rollout_start(
    version: str = typer.Argument(..., help="A registered version (modelwarden registry add)."),
    plan: Path = typer.Option(
        None,
        "--plan",
        help="Plan YAML (rollout plan); default: 5% of Plant_B, then 25, 50, 100% with 48 h holds.",
    ),
    key: str = key_option(),
    now: str = NOW_OPTION,
    format: Format = FORMAT_OPTION,
) -> None:
    """Start a canary rollout of VERSION against the live stable version."""
    from modelwarden.rollout import service

    state = state_store()
    view = service.start_rollout(
        settings(),
        state,
        version,
        actor(state, key),
        plan_path=plan,
        now=parse_time_option(now, "now"),
    )
    r = view["rollout"]
    _print_rollout(r, format)
    if format == Format.table:
        console.print(f"rollout {r['id']} started: {r['plan_description']}")


@rollout_app.command("status")
@handle_errors
def rollout_status(format: Format = FORMAT_OPTION) -> None:
    """The rollout under way (or the last one): step, holds, last verdict."""
    from modelwarden.rollout import service

    _print_rollout(service.rollout_view(settings(), state_store())["rollout"], format)


def _operate(
    operation: str, reason: str, key: str | None, format: Format, **kw: Any
) -> dict[str, Any]:
    from modelwarden.rollout import service

    state = state_store()
    view = service.operate(
        settings(), state, operation, actor(state, key), reason, reason_required=False, **kw
    )
    _print_rollout(view["rollout"], format)
    return dict(view["rollout"] or {})


@rollout_app.command("pause")
@handle_errors
def rollout_pause(
    reason: str = reason_option(), key: str = key_option(), format: Format = FORMAT_OPTION
) -> None:
    """Hold the current step (the SOP policy keeps protecting the canary)."""
    _operate("pause", reason, key, format)


@rollout_app.command("resume")
@handle_errors
def rollout_resume(
    reason: str = reason_option(), key: str = key_option(), format: Format = FORMAT_OPTION
) -> None:
    """Continue a paused rollout (its routes are re-applied if they were changed)."""
    _operate("resume", reason, key, format)


@rollout_app.command("abort")
@handle_errors
def rollout_abort(
    reason: str = reason_option(), key: str = key_option(), format: Format = FORMAT_OPTION
) -> None:
    """End the rollout: all traffic back to the stable version, the canary back to staging."""
    _operate("abort", reason, key, format)


@rollout_app.command("rollback")
@handle_errors
def rollout_rollback(
    reason: str = reason_option(required=True, help="Why (kept in the incident and the log)."),
    key: str = key_option(),
    policy_file: Path = POLICY_OPTION,
    notify_wait: float = notify_wait_option(
        "Seconds to wait for the notifications to be delivered."
    ),
    format: Format = FORMAT_OPTION,
) -> None:
    """Roll back the rollout under way by hand: the SOP's rollback transaction (100 % to the
    stable version, the canary quarantined, an incident with the RCA logs, notifications)."""
    r = _operate("rollback", reason, key, format, policy_path=policy_file, notify_wait=notify_wait)
    if format == Format.table:
        console.print(f"rolled back to {r.get('stable_version')}; incident {r.get('incident_id')}")


@rollout_app.command("promote")
@handle_errors
def rollout_promote(
    reason: str = reason_option(),
    key: str = key_option(),
    now: str = NOW_OPTION,
    format: Format = FORMAT_OPTION,
) -> None:
    """Advance to the next step now, without the hold or the judge (an audited override)."""
    _operate("promote", reason, key, format, now=parse_time_option(now, "now"))


@rollout_app.command("tick")
@handle_errors
def rollout_tick(
    now: str = NOW_OPTION,
    policy_file: Path = POLICY_OPTION,
    notify_wait: float = notify_wait_option(
        "Seconds to wait for "
        "notifications after a rollback (they are retried later "
        "by the server or incidents notify)."
    ),
    format: Format = FORMAT_OPTION,
) -> None:
    """One controller tick: the SOP policy, the judge at the end of a hold, the next step.

    Exit 1 when the tick rolled back.
    """
    from modelwarden.rollout import service

    done = service.tick(
        settings(), state_store(), parse_time_option(now, "now"), policy_file, notify_wait
    )
    rep = done.report
    if done.undelivered:
        err_console.print(
            f"{len(done.undelivered)} notification(s) not delivered yet "
            f"({', '.join(n['channel'] for n in done.undelivered)}); the server, or "
            "modelwarden incidents notify, retries them",
            highlight=False,
        )
    output(rep.to_dict(), format, lambda: _print_tick(rep))
    if rep.action == "rollback":
        raise typer.Exit(EXIT_CHECK_FAILED)


def _print_tick(rep: Any) -> None:
    where = f"rollout {rep.rollout_id} " if rep.rollout_id else ""
    console.print(
        f"{when(rep.at)} {where}{rep.action}: {rep.message}".rstrip(": "), highlight=False
    )
    if rep.fired:
        print_table(
            [
                {
                    "rule": f["rule_id"],
                    "scope": f["scope"],
                    "status": f["status"],
                    "value": f["value"],
                    "baseline": f["baseline_value"],
                    "n": f["n"],
                    "threshold": f["threshold"],
                    "severity": f["severity"],
                }
                for f in rep.fired
            ],
            title="Rules that fired",
        )


@rollout_app.command("list")
@handle_errors
def rollout_list(format: Format = FORMAT_OPTION) -> None:
    """Every rollout, newest first."""
    from modelwarden.rollout import service

    rows = service.list_rollouts(state_store())
    output(
        rows,
        format,
        lambda: print_table(
            [
                {
                    "id": r["id"],
                    "version": r["version"],
                    "stable": r["stable_version"],
                    "status": r["status"],
                    "step": r["step"] + 1,
                    "started": when(r["created_at"]),
                    "ended": when(r["ended_at"]),
                    "incident": r["incident_id"],
                    "why": r["end_reason"],
                }
                for r in rows
            ],
            title="Rollouts",
        ),
    )


@rollout_app.command("plan")
@handle_errors
def rollout_plan(
    out: Path = typer.Option(None, "--out", "-o", help="Write the default plan here."),
    force: bool = typer.Option(False, "--force"),
) -> None:
    """Print (or write) the default rollout plan as YAML, to copy and edit."""
    from modelwarden.rollout import service

    text = service.write_default_plan(out, force)
    if out is None:
        print(text, end="")
    else:
        console.print(f"wrote {out}")


# ---- shadow -------------------------------------------------------------------------------------
shadow_app = typer.Typer(
    help="Shadow testing: copies of live requests to a candidate, compared.", no_args_is_help=True
)
app.add_typer(shadow_app, name="shadow")


@shadow_app.command("start")
@handle_errors
def shadow_start(
    version: str = typer.Argument(..., help="A registered version, not quarantined."),
    sample: float = typer.Option(0.2, "--sample", help="Share of live requests copied (0-1]."),
    key: str = key_option(),
    format: Format = FORMAT_OPTION,
) -> None:
    """Copy a share of live requests to VERSION; its answers are logged, never returned."""
    from modelwarden.rollout import service

    state = state_store()
    table = service.start_shadow(settings(), state, version, sample, actor(state, key))
    output(
        table.to_dict(),
        format,
        lambda: console.print(
            f"shadowing {version} on {sample:.0%} of live requests (route table v{table.version})"
        ),
    )


@shadow_app.command("stop")
@handle_errors
def shadow_stop(key: str = key_option(), format: Format = FORMAT_OPTION) -> None:
    """Stop sending shadow copies."""
    from modelwarden.rollout import service

    state = state_store()
    table = service.stop_shadow(settings(), state, actor(state, key))
    output(
        table.to_dict(),
        format,
        lambda: console.print(f"shadow stopped (route table v{table.version})"),
    )


@shadow_app.command("report")
@handle_errors
def shadow_report(
    version: str = typer.Option(None, "--version", help="Default: the live shadow version."),
    since: str = typer.Option(None, "--since"),
    until: str = typer.Option(None, "--until"),
    top: int = typer.Option(10, "--top", min=1, help="How many of the most divergent pairs."),
    key: str = key_option(),
    format: Format = FORMAT_OPTION,
) -> None:
    """Pair shadow answers with live answers and rank the differences; kept as evidence."""
    from modelwarden.rollout import service

    state = state_store()
    rep = service.shadow_report(
        settings(),
        state,
        version,
        parse_time_option(since, "since"),
        parse_time_option(until, "until"),
        top,
        actor(state, key),
    )
    output(rep.to_dict(), format, lambda: _print_shadow(rep))


def _print_shadow(rep: Any) -> None:
    print_table(
        [{"measure": k, "value": v} for k, v in rep.summary.items()],
        title=f"Shadow {rep.version or '(all)'} against live answers ({rep.embedder})",
    )
    for i, p in enumerate(rep.top, 1):
        console.rule(
            f"#{i} score {p.score:.2f} · {p.plant} · {when(p.timestamp)} · {p.shadow_request_id}"
        )
        console.print(f"[bold]prompt[/]: {p.prompt}", highlight=False)
        console.print(
            f"[bold]live {p.live_version}[/] ({p.live_latency_ms:.0f} ms"
            f"{', error ' + p.live_error if p.live_error else ''}): {p.live_answer}",
            highlight=False,
        )
        console.print(
            f"[bold]shadow {p.shadow_version}[/] ({p.shadow_latency_ms:.0f} ms"
            f"{', error ' + p.shadow_error if p.shadow_error else ''}): "
            f"{p.shadow_answer}",
            highlight=False,
        )
        dist = "—" if p.distance is None else f"{p.distance:.3f}"
        console.print(
            f"distance {dist}; new safety flags {p.new_safety or '—'}; numbers only live "
            f"{p.numbers_only_live or '—'}, only shadow {p.numbers_only_shadow or '—'}; length "
            f"ratio {p.length_ratio if p.length_ratio is None else round(p.length_ratio, 2)}",
            highlight=False,
        )
    if rep.evidence_id:
        console.print(f"summary kept as evidence {rep.evidence_id} on {rep.version}")


# ---- export ------------------------------------------------------------------------------------
@app.command("export")
@handle_errors
def export(
    out: Path = typer.Option(..., "--out", help="Directory to write the files into."),
    since: str = typer.Option(None, "--since", help="ISO date or time (inclusive)."),
    until: str = typer.Option(None, "--until", help="ISO date or time (exclusive)."),
    export_format: str = typer.Option(
        "parquet", "--format", help="parquet or jsonl (the files' format)."
    ),
    output_: Format = typer.Option(
        Format.table, "--output", help="table or json: how this command reports."
    ),
) -> None:
    """Requests (with their latest feedback and escalation), KPIs and drift history, as files."""
    from modelwarden.report.export import export_data

    manifest = export_data(
        settings(),
        out,
        since=parse_time_option(since, "since"),
        until=parse_time_option(until, "until"),
        fmt=export_format,
    )
    output(
        manifest,
        output_,
        lambda: print_table(
            [
                {"table": name, "file": str(out / f["file"]), "rows": f["rows"]}
                for name, f in manifest["files"].items()
            ],
            ["table", "file", "rows"],
            title=f"Exported {manifest['since'] or 'the start'} to {manifest['until'] or 'now'}",
        ),
    )
