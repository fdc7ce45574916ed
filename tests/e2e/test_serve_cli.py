"""The serving commands' guards: loopback by default, keys shown once and stored hashed."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any


def test_serve_refuses_a_non_loopback_host_without_allow_remote(
    run_cli: Any, data_dir: Path
) -> None:
    res = run_cli("serve", "--host", "0.0.0.0", "--port", "1", data=data_dir)
    assert res.code == 2
    assert "--allow-remote" in res.err


def test_keys_are_printed_once_and_stored_only_as_a_hash(run_cli: Any, data_dir: Path) -> None:
    created = run_cli(
        "keys",
        "create",
        "--role",
        "operator",
        "--name",
        "on-call",
        "--format",
        "json",
        data=data_dir,
    )
    assert created.code == 0, created.err
    key = json.loads(created.out)
    assert key["key"].startswith("mw_") and key["role"] == "operator"
    listed = run_cli("keys", "list", "--format", "json", data=data_dir)
    assert listed.code == 0, listed.err
    (entry,) = json.loads(listed.out)
    assert "key" not in entry and key["key"] not in listed.out
    assert entry["name"] == "on-call" and key["key"].startswith(entry["prefix"])
    with sqlite3.connect(data_dir / "state.db") as db:
        stored = db.execute("SELECT key_hash FROM api_keys").fetchall()
    assert stored == [(hashlib.sha256(key["key"].encode()).hexdigest(),)]
    assert key["key"].encode() not in (data_dir / "state.db").read_bytes()
