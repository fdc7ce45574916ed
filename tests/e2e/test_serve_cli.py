"""The serving commands' guards: loopback by default, keys shown once and stored hashed."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import CLI

from modelwarden.errors import InputError
from modelwarden.gateway import fake_upstream
from modelwarden.server.config import serving
from modelwarden.server.runner import free_port
from modelwarden.settings import Settings


def test_serve_refuses_a_non_loopback_host_without_allow_remote(
    run_cli: Any, data_dir: Path
) -> None:
    res = run_cli("serve", "--host", "0.0.0.0", "--port", "1", data=data_dir)
    assert res.code == 2
    assert "--allow-remote" in res.err


def test_fake_upstream_refuses_bad_options_before_it_listens(run_cli: Any, data_dir: Path) -> None:
    base = ("fake-upstream", "--port", "1", "--version", "v1")
    bad = {
        ("--quality", "great"): "quality must be one of good, poor, unsafe",
        ("--unsafe-share", "0.6", "--poor-share", "0.5"): (
            "unsafe_share and poor_share add up to more than 1"
        ),
        ("--host", "0.0.0.0"): "--host 0.0.0.0 would accept connections from other machines",
    }
    for args, message in bad.items():
        res = run_cli(*base, *args, data=data_dir)
        assert res.code == 2 and message in res.err, (args, res.err)
    # the same checks for a fake upstream made in code
    with pytest.raises(InputError) as err:
        fake_upstream.create_app("v1", quality="great")
    assert err.value.field == "quality"
    with pytest.raises(InputError) as err:
        fake_upstream.create_app("v1", error_rate=1.5)
    assert err.value.field == "error_rate"
    with pytest.raises(InputError) as err:
        fake_upstream.create_app("v1", unsafe_share=0.6, poor_share=0.5)
    assert err.value.field == "poor_share"
    fake_upstream.create_app("v1", unsafe_share=0.5, poor_share=0.5)  # shares up to 1 are fine


def test_serve_options_reach_the_server_config(run_cli: Any, data_dir: Path) -> None:
    res = run_cli("serve", "--ingest-workers", "-1", "--port", "1", data=data_dir)
    assert res.code == 2
    assert "--ingest-workers" in res.err
    run = serving(Settings(data_dir=data_dir), "127.0.0.1", ingest_workers=0, tick_interval_s=2)
    assert (run.config.ingest_workers, run.config.tick_interval_s) == (0, 2)
    assert serving(Settings(data_dir=data_dir), "127.0.0.1").config.ingest_workers == 1


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


def _serve(data_dir: Path, *args: str) -> tuple[Any, str]:
    """Start ``modelwarden serve`` on a free port and wait until it answers."""
    port = free_port()
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "250", "MODELWARDEN_EMBEDDER": "hashing"}
    env.pop("MODELWARDEN_GATEWAY_AUTH", None)
    proc = subprocess.Popen(
        [CLI, "--data", str(data_dir), "serve", "--port", str(port), *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "serve did not start"
        time.sleep(0.2)


def _stop(proc: Any) -> str:
    proc.terminate()
    _out, err = proc.communicate(timeout=30)
    return err.decode()


def test_serve_warns_when_keys_exist_but_gateway_auth_is_off(run_cli: Any, data_dir: Path) -> None:
    assert run_cli("keys", "create", "--role", "ingest", data=data_dir).code == 0
    assert (
        run_cli("routes", "set", "--stable", "sop-assistant-v1.1=http://127.0.0.1:9", data=data_dir)
    ).code == 0
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

    proc, url = _serve(data_dir)
    try:
        # No key: answered by the gateway (a 502 from the dead upstream), not a 401.
        assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code == 502
    finally:
        err = _stop(proc)
    assert "gateway auth off" in err
    assert "1 API key(s) exist but gateway auth is off" in err
    assert "--gateway-auth required" in err

    proc, url = _serve(data_dir, "--gateway-auth", "required")
    try:
        assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code == 401
    finally:
        err = _stop(proc)
    assert "gateway auth required" in err and "warning" not in err

    bad = run_cli("serve", "--port", "1", "--gateway-auth", "maybe", data=data_dir)
    assert bad.code == 2 and "--gateway-auth must be off or required" in bad.err
