"""A local HTTPS stand-in for the S3 pre-signed URL a Lambda hook's payload is read from.

The certificate comes from a throw-away CA (``trustme``); ``client_context``
trusts it, as the hook's TLS context in the tests. Each URL serves one body
(or a status, a redirect, or a hang) and every request is recorded.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trustme


@dataclass(frozen=True)
class Served:
    body: bytes = b""
    status: int = 200
    location: str = ""
    hang: float = 0.0


class PayloadServer:
    """Serves registered paths over HTTPS on 127.0.0.1; records the paths asked for."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.routes: dict[str, Served] = {}
        self.requests: list[str] = []
        self.release = threading.Event()
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                owner.requests.append(path)
                served = owner.routes.get(path, Served(b"", 404))
                if served.hang:
                    owner.release.wait(served.hang)
                try:
                    self.send_response(served.status)
                    if served.location:
                        self.send_header("location", served.location)
                    self.send_header("content-length", str(len(served.body)))
                    self.end_headers()
                    self.wfile.write(served.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout tests)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = server_context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def url_for(self, document: Any = None, *, raw: bytes | None = None, **options: Any) -> str:
        """A pre-signed-looking URL serving ``document`` as JSON (or ``raw`` bytes)."""
        key = f"/hooks-payloads/{secrets.token_hex(8)}"
        body = raw if raw is not None else json.dumps(document).encode()
        self.routes[key] = Served(body, **options)
        return f"{self.origin}{key}?X-Amz-Signature=secret-signature-{secrets.token_hex(4)}"

    def __enter__(self) -> PayloadServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
