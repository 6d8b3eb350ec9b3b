"""A slow idempotency table: an HTTP proxy in front of moto that can delay DynamoDB calls.

Why: the bookkeeping after a request's last write (the journal's final
phase, the lease's release, the idempotency record) talks to the table with
no deadline of its own in the SDK's eyes; a slow table is how the timer
could fire after a change finished. moto answers at once, so a scenario
points one worker's ``AWS_ENDPOINT_URL_DYNAMODB`` at this proxy and turns
the delay on from a condition (e.g. "an UpdateMembership call was made").

Every request is forwarded unchanged (moto does not check signatures); the
delay is added before forwarding, so the call takes effect late, as a slow
table's would.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

_HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


class SlowTable:
    """Forward to ``target_url``; while ``slow_when()`` holds, each call waits ``delay`` first."""

    def __init__(self, target_url: str, *, delay: float, slow_when: Callable[[], bool]) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.delay = delay
        self.slow_when = slow_when
        self.delayed: list[str] = []  # X-Amz-Target of every delayed call
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="slow-table"
        )

    @property
    def url(self) -> str:
        """The proxy's endpoint (for ``AWS_ENDPOINT_URL_DYNAMODB``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        table = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if table.slow_when():
                    with table._lock:
                        table.delayed.append(str(self.headers.get("X-Amz-Target") or "?"))
                    time.sleep(table.delay)
                upstream = http.client.HTTPConnection(*table.target, timeout=30)
                # The client may have given up (read timeout) while the call was held:
                # the call still reaches moto, its answer goes nowhere.
                with contextlib.suppress(OSError):
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    upstream.request("POST", self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in _HOP_HEADERS:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                upstream.close()

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler

    def __enter__(self) -> SlowTable:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
