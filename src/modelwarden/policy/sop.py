"""The SOP document, rendered from the same policy file the engine enforces.

Because the trigger conditions are printed from the rules themselves, the document and the
behaviour cannot disagree: change the policy file and both change.
"""

from __future__ import annotations

from modelwarden.policy.spec import Policy, Rule

_BASELINE = {
    "stable_same_window": "against the stable version over the same window",
    "previous_window": "against the previous window",
    "same_hours_previous_days": "against the same {window} of each of the previous {days} days",
    "none": "",
}


def _baseline(rule: Rule) -> str:
    text = _BASELINE[rule.baseline]
    if rule.baseline == "stable_same_window":
        text += " (without a stable version: " + _BASELINE[rule.fallback] + ")"
    return text.format(window=rule.window, days=rule.baseline_days)


def _condition(rule: Rule) -> str:
    scope = {"per_plant": "at any plant", "overall": "across all plants"}
    where = " or ".join(scope[s] for s in rule.scope)
    extra = []
    if rule.min_samples:
        extra.append(f"at least {rule.min_samples} requests on each side")
    if rule.alpha is not None and rule.baseline != "none":
        extra.append(f"one-sided test significant at α = {rule.alpha}")
    if rule.sustain_td.total_seconds() > 0:
        extra.append(f"holding for {rule.sustain}")
    details = (
        f" [`{rule.id}`: {rule.metric} {rule.comparator} {rule.threshold:g} over {rule.window}"
    )
    details += f", {_baseline(rule)}" if _BASELINE[rule.baseline] else ""
    details += f", {where}; " + ", ".join(extra) if extra else f", {where}"
    details += f"; severity: {rule.severity}]"
    return rule.title + "." + details


def render_sop(policy: Policy) -> str:
    n = policy.notify
    lines = [
        "---",
        f"**{policy.sop_id}: {policy.title}**",
        "",
        "-   **Trigger Conditions (any of the following):**",
    ]
    for i, rule in enumerate(policy.rules, 1):
        lines.append(f"    {i}.  {_condition(rule)}")
    lines += [
        "",
        "-   **Procedure:**",
        "    1.  **Immediate Action (enforced by ModelWarden):** Via the ModelWarden gateway, "
        "immediately re-route 100% of traffic back to the previous stable model version "
        "(e.g. from `v1.2` to `v1.1`). The route change takes effect within one second.",
        f"    2.  **Communication:** Post a status update in `{n.slack_channel}` and to every "
        "configured webhook and e-mail recipient, notifying stakeholders that a rollback has "
        "occurred, with the rule, the values, the baseline, n and the threshold.",
        "    3.  **Investigation:** Open a high-priority incident with its timeline. The logs of "
        f"the {policy.rca_lookback} before the trigger are written beside the incident (Parquet "
        "and JSONL) for the root cause analysis (RCA).",
        "    4.  **Resolution:** The problematic model version is quarantined. It cannot be "
        "routed, shadowed or promoted until the root cause is fixed, the model is re-validated in "
        "a staging environment (an evaluation run on the golden set passes its gate), and the fix "
        "is approved by the AI Governance Board (a key with the approver role, not the requester).",
        "---",
        "",
    ]
    return "\n".join(lines)
