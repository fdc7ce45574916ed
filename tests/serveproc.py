"""Start a real ``modelwarden serve`` process for a test and wait until it answers ``/healthz``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from modelwarden.server.runner import free_port

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


class Proc:
    """A ``modelwarden`` command that listens (``serve``, ``fake-upstream``) on a free port."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [CLI, *args, "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "NO_COLOR": "1", **(env or {})},
        )

    def wait(self, timeout: float = 60) -> Proc:
        """Wait until ``/healthz`` answers; raise with the end of stderr if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(f"{self.url}/healthz", timeout=1).raise_for_status()
                return self
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    if self.proc.poll() is None:
                        self.proc.kill()  # else reading its stderr would wait for ever
                    _, err = self.proc.communicate()
                    raise RuntimeError(
                        f"{' '.join(self.proc.args[1:3])} did not start: "
                        f"{(err or b'').decode()[-2000:]}"
                    ) from None
                time.sleep(0.05)

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/healthz", timeout=5).json())

    def stop(self) -> None:
        """SIGTERM (a graceful drain), then SIGKILL after 15 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
