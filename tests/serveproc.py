"""Start a real ``modelwarden serve`` process for a test and wait until it answers ``/healthz``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

CLI = str(Path(sys.executable).parent / "modelwarden")


def start_serve(
    data: Path,
    port: int,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.Popen[bytes]:
    """``modelwarden --data DATA serve --port PORT ARGS...`` with the hashing embedder.

    Raises ``AssertionError`` with the end of the server's stderr if it exits before answering.
    """
    env = {**os.environ, "MODELWARDEN_EMBEDDER": "hashing", **(env or {})}
    proc = subprocess.Popen(
        [CLI, "--data", str(data), "serve", "--port", str(port), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"serve exited: {err[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("serve did not start")
