"""Local stand-ins for the services the provider talks to, for tests and the demo.

Nothing here reaches AWS: everything listens on 127.0.0.1 only.

* ``emulator``: the Security IR REST-JSON API (Get/Update/ListMemberships),
  routed and validated from botocore's own service model, with fault injection.
* ``receiver``: an HTTPS stand-in for CloudFormation's pre-signed S3
  ResponseURL, with a throw-away CA the client process can trust.
* ``services``: process and lifecycle helpers (moto's DynamoDB, the
  idempotency table from ``template.yaml``, and the ``local_services()`` bundle).

This package module also holds the small HTTP plumbing both servers share
(stdlib only, so importing the receiver does not pull in botocore).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import ssl
import struct
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that serves from a background thread and stops cleanly.

    Why: keep-alive connections (botocore pools them) and hanging handlers
    must not outlive :meth:`stop`, or a stopped server would keep answering
    or a test would wait for a sleeping thread.
    """

    daemon_threads = True
    block_on_close = False
    app: Any = None

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server_address[1])

    def start_background(self, name: str) -> None:
        """Serve forever in a daemon thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name=name, daemon=True
        )
        self._thread.start()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Track the connection while a handler owns it, so :meth:`stop` can cut it."""
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when the peer went away (a client timeout, an injected reset)."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError | TimeoutError | ssl.SSLError):
            super().handle_error(request, client_address)

    def stop(self) -> None:
        """Stop accepting, release waiting handlers, and shut open connections."""
        self.stopping.set()
        self.shutdown()
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)


class JSONRequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler helpers: read a body, send JSON, or reset the connection."""

    protocol_version = "HTTP/1.1"
    verbose: ClassVar[bool] = False

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet by default: test output should show assertions, not access logs."""
        if self.verbose:
            super().log_message(format, *args)

    def header_dict(self) -> dict[str, str]:
        """Request headers with lower-case names (HTTP names are case-insensitive)."""
        return {name.lower(): value for name, value in self.headers.items()}

    def read_body(self) -> bytes:
        """The request body (Content-Length framed; botocore never sends chunked here)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        """Send ``body`` as JSON with a Content-Length and a request id."""
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def reset_connection(self) -> None:
        """Close the socket with SO_LINGER 0 so the peer gets a TCP RST, not an answer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # the socket really closes only when no file object refers to it
            self.connection.close()


def serve_until_signalled(ready_line: Mapping[str, Any], stop: Callable[[], None]) -> None:
    """Print ``ready_line`` as one JSON line, then block until SIGTERM/SIGINT and ``stop()``.

    Why a single JSON line: the parent process (see ``services``) reads
    exactly one line to learn the ephemeral port, so nothing else may be
    printed to stdout before it.
    """
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    try:
        print(json.dumps(dict(ready_line)), flush=True)
        while not done.wait(0.5):
            pass
    finally:
        stop()
