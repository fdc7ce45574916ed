"""A local webhook receiver: the demo's stand-in for the on-call channel.

A real HTTP server on 127.0.0.1 that accepts JSON POSTs on any path, keeps them in memory in
arrival order and answers 200, so a notification's delivery is observed end to end.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from modelwarden.server.runner import ServerThread


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

        @app.post("/{path:path}")
        async def receive(path: str, request: Request) -> JSONResponse:
            try:
                body = json.loads(await request.body())
            except ValueError:
                return JSONResponse({"error": "not JSON"}, status_code=400)
            with self._lock:
                self.received.append(
                    {"path": "/" + path, "at": datetime.now(UTC).isoformat(), "body": body}
                )
            return JSONResponse({"ok": True})

        self.server = ServerThread(app)

    @property
    def url(self) -> str:
        return f"{self.server.url}/hooks/on-call"

    def start(self) -> WebhookReceiver:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.received)
