"""``routes set --key`` records who acted, like every other command that changes something."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelwarden.governance import audit
from modelwarden.governance.keys import create_key
from modelwarden.store.state import StateStore

STABLE = "sop-assistant-v1.1=http://127.0.0.1:9101"


def test_routes_set_names_the_key_in_the_audit_log(data_dir: Path, run_cli: Any) -> None:
    state = StateStore.at(data_dir)
    ops, made = create_key(state, "operator", name="night shift")
    reviewer, _ = create_key(state, "reviewer", name="qa")
    res = run_cli("routes", "set", "--stable", STABLE, "--key", ops, data=data_dir)
    assert res.code == 0, res.err
    done = audit.entries(state, action="routes.set")
    assert [e.actor for e in done] == [f"key {made.id} (night shift)"]

    refused = run_cli("routes", "set", "--stable", STABLE, "--key", reviewer, data=data_dir)
    assert refused.code == 2 and "may not change routes" in refused.err
    [entry] = audit.entries(state, action="routes.refused")
    assert entry.actor.endswith("(qa)") and entry.evidence["error"] == "forbidden"
    assert len(audit.entries(state, action="routes.set")) == 1

    unknown = run_cli("routes", "set", "--stable", STABLE, "--key", "mw_nope", data=data_dir)
    assert unknown.code == 2 and "unknown or revoked" in unknown.err

    local = run_cli("routes", "set", "--stable", STABLE, data=data_dir)
    assert local.code == 0, local.err
    assert audit.entries(state, action="routes.set", newest_first=True)[0].actor.startswith("cli:")
    state.close()
