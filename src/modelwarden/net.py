"""HTTP client defaults shared by every part that calls an HTTP server."""

from __future__ import annotations

import functools
import ssl


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context httpx would make (certifi's authorities, or ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR``), made once per process and shared by its clients.

    httpx makes a context for every client it opens, and making one reads the whole CA bundle:
    about 30 ms of CPU. Short-lived clients (one per batch of simulated traffic, one per wait for
    the spool) spent more on that than on their requests. A context is safe to share.
    """
    import httpx  # lazy: only callers of HTTP servers need it

    return httpx.create_ssl_context()
