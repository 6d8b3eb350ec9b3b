"""An HTTPS stand-in for CloudFormation's pre-signed S3 ``ResponseURL``.

Why: the provider's last act is a PUT of its JSON answer to that URL, and
the ways this goes wrong in production (TLS trust, a re-encoded pre-signed
query, an oversized body, S3 answering 5xx/403, a black-holed connection)
should be testable offline. The receiver listens on 127.0.0.1 with a
certificate from a throw-away CA made at start-up (``trustme``); the CA PEM
is written to a file so a client process can trust it via ``SSL_CERT_FILE``
(stdlib ``ssl``/``urllib``/``http.client``) or ``REQUESTS_CA_BUNDLE``.

Each URL from :meth:`ResponseReceiver.url_for` carries a query string shaped
like a SigV4 pre-signed S3 URL; like S3, a PUT to that path whose query was
altered is refused with 403 ``SignatureDoesNotMatch`` (``strict_urls``).

As a process: ``python -m sirlocal.receiver --port 0`` prints one JSON line
``{"url", "port", "ca", "pid"}`` and serves a control API under
``/_receiver/`` that :class:`ReceiverControl` drives.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import ssl
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit
from xml.sax.saxutils import escape

import trustme

from sirlocal import JSONRequestHandler, LoopbackHTTPServer, serve_until_signalled

CONTROL_PREFIX = "/_receiver"
MAX_RESPONSE_BYTES = 4096  # CloudFormation rejects larger custom resource responses
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided."
)
REQUIRED_KEYS = ("Status", "StackId", "RequestId", "LogicalResourceId", "PhysicalResourceId")
FAULT_STATUSES = {
    403: ("AccessDenied", "Access Denied"),
    429: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
}


def cfn_response_problems(raw: bytes, event: Mapping[str, Any] | None = None) -> list[str]:
    """Why CloudFormation would reject (or misattribute) this response body; [] if fine.

    With ``event`` (the request the response answers), the ids must echo it.
    """
    problems = []
    if len(raw) > MAX_RESPONSE_BYTES:
        problems.append(f"body is {len(raw)} bytes, over the {MAX_RESPONSE_BYTES}-byte limit")
    try:
        body = json.loads(raw)
    except ValueError:
        return [*problems, "body is not JSON"]
    if not isinstance(body, dict):
        return [*problems, "body is not a JSON object"]
    problems += [f"{key} is missing or empty" for key in REQUIRED_KEYS if not body.get(key)]
    if body.get("Status") not in (None, "SUCCESS", "FAILED"):
        problems.append("Status must be SUCCESS or FAILED")
    if "Data" in body and not isinstance(body["Data"], dict):
        problems.append("Data must be an object")
    if len(str(body.get("PhysicalResourceId", ""))) > 1024:
        problems.append("PhysicalResourceId is longer than 1 KB")
    for key in ("StackId", "RequestId", "LogicalResourceId"):
        if event is not None and key in event and body.get(key) != event[key]:
            problems.append(f"{key} does not match the request")
    return problems


@dataclass(frozen=True)
class ReceivedPut:
    """One PUT that reached the receiver, whatever it was answered."""

    path: str
    query: str
    headers: dict[str, str]  # names lower-cased
    raw: str
    body: Any
    status: int | None
    fault: str | None
    problems: list[str]
    time: float

    @property
    def accepted(self) -> bool:
        """True when the receiver answered 200 (S3 stored the object)."""
        return self.status == 200

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (for the control API)."""
        return asdict(self)


@dataclass(frozen=True)
class _Fault:
    kind: str  # "status", "hang", "reset"
    status: int = 0
    seconds: float = 0.0


def _presigned_query(path: str) -> str:
    """A query string shaped like a SigV4 pre-signed S3 PUT URL (not a real signature)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    signature = hashlib.sha256(path.encode() + secrets.token_bytes(16)).hexdigest()
    return urlencode(
        {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"AKIAIOSFODNN7EXAMPLE/{stamp[:8]}/us-east-1/s3/aws4_request",
            "X-Amz-Date": stamp,
            "X-Amz-Expires": "7200",
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": signature,
        }
    )


def normalize_path(path_or_url: str) -> str:
    """Request path for a URL from :meth:`ResponseReceiver.url_for`, a path, or a bare name."""
    if "://" in path_or_url:
        return urlsplit(path_or_url).path
    if path_or_url.startswith("/"):
        return path_or_url
    return "/" + quote(path_or_url, safe="")


class ResponseReceiver:
    """The HTTPS receiver: hands out URLs, records PUTs, injects S3-side faults.

    Thread-safe; :meth:`wait_for` blocks on a condition variable, no polling.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, strict_urls: bool = True) -> None:
        self.host = host
        self.requested_port = port
        self.strict_urls = strict_urls
        self._ca = trustme.CA()
        self._directory = tempfile.mkdtemp(prefix="sirlocal-receiver-")
        self.ca_path = os.path.join(self._directory, "ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_path)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ca.issue_cert("127.0.0.1", "localhost", "::1").configure_cert(self._context)
        self._changed = threading.Condition()
        self._puts: list[ReceivedPut] = []
        self._urls: dict[str, tuple[str, Mapping[str, Any] | None]] = {}
        self._faults: deque[_Fault] = deque()
        self.tls_failures = 0
        #: The consumer stacks' statuses, served as CloudFormation's DescribeStacks
        #: (the function reads its stack's status on a Delete).
        self.stack_statuses: dict[str, str] = {}
        self._server: _TLSServer | None = None
        self._port: int | None = None

    # lifecycle -----------------------------------------------------------------

    def start(self) -> ResponseReceiver:
        """Listen (0 = ephemeral port) and serve in a background thread."""
        if self._server is None:
            self._server = _TLSServer((self.host, self.requested_port), _ReceiverHandler)
            self._server.app = self
            self._server.context = self._context
            self._server.start_background("cfn-response-receiver")
            self._port = self._server.port
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections, delete the CA file."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> ResponseReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("receiver was never started")
        return self._port

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT`` (the certificate also names localhost)."""
        return f"https://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Variables that make a client process trust the receiver's CA."""
        return {"SSL_CERT_FILE": self.ca_path, "REQUESTS_CA_BUNDLE": self.ca_path}

    def client_context(self) -> ssl.SSLContext:
        """An SSL context trusting only the receiver's CA (for in-process clients)."""
        return ssl.create_default_context(cafile=self.ca_path)

    # URLs and records ----------------------------------------------------------

    def url_for(self, name: str, *, event: Mapping[str, Any] | None = None) -> str:
        """A fresh pre-signed-looking URL whose path is ``name`` (percent-encoded).

        With ``event``, a PUT's StackId/RequestId/LogicalResourceId are
        checked against it and mismatches listed in ``ReceivedPut.problems``.
        """
        path = normalize_path(name)
        query = _presigned_query(path)
        with self._changed:
            self._urls[path] = (query, dict(event) if event is not None else None)
        return f"{self.base_url}{path}?{query}"

    def requests(self, path: str | None = None) -> list[ReceivedPut]:
        """Every PUT (also the refused and faulted ones), oldest first."""
        wanted = None if path is None else normalize_path(path)
        with self._changed:
            return [p for p in self._puts if wanted is None or p.path == wanted]

    def responses(self, path: str | None = None) -> list[ReceivedPut]:
        """Only the accepted PUTs (answered 200)."""
        return [p for p in self.requests(path) if p.accepted]

    def wait_for(self, path: str, timeout: float = 10.0) -> ReceivedPut:
        """The first accepted PUT to ``path`` (URL, path or name); TimeoutError after ``timeout``."""
        wanted = normalize_path(path)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for put in self._puts:
                    if put.path == wanted and put.accepted:
                        return put
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no accepted PUT to {wanted} within {timeout} s")
                self._changed.wait(remaining)

    def reset(self) -> None:
        """Forget handed-out URLs, records and pending faults."""
        with self._changed:
            self._puts.clear()
            self._urls.clear()
            self._faults.clear()

    # faults --------------------------------------------------------------------

    def fail_next(self, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` PUTs with ``status`` (403, 429, 500 or 503) and an S3 error."""
        if status not in FAULT_STATUSES:
            raise ValueError(f"status must be one of {sorted(FAULT_STATUSES)}")
        self._add_faults(_Fault("status", status=status), times)

    def hang_next(self, seconds: float, times: int = 1) -> None:
        """Read the next ``times`` PUTs, then say nothing for ``seconds`` and close."""
        self._add_faults(_Fault("hang", seconds=seconds), times)

    def reset_next(self, times: int = 1) -> None:
        """Read the next ``times`` PUTs, then reset the connection (TCP RST)."""
        self._add_faults(_Fault("reset"), times)

    def clear_faults(self) -> None:
        """Drop pending faults."""
        with self._changed:
            self._faults.clear()

    def pending_faults(self) -> int:
        """How many PUTs will still be faulted."""
        with self._changed:
            return len(self._faults)

    def count_tls_failure(self) -> None:
        """Count a failed handshake (``tls_failures``): usually a client not trusting the CA."""
        with self._changed:
            self.tls_failures += 1

    def _add_faults(self, fault: _Fault, times: int) -> None:
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._changed:
            self._faults.extend([fault] * times)

    # request handling ----------------------------------------------------------

    def receive(
        self, target: str, headers: Mapping[str, str], raw: bytes
    ) -> tuple[_Fault | None, int]:
        """Record one PUT and decide its fate: (fault or None, status to answer)."""
        parts = urlsplit(target)
        with self._changed:
            fault = self._faults.popleft() if self._faults else None
            handed = self._urls.get(parts.path)
            status = 200
            if fault is not None:
                status = fault.status
            elif self.strict_urls and handed is not None and parts.query != handed[0]:
                status = 403
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            put = ReceivedPut(
                path=parts.path,
                query=parts.query,
                headers=dict(headers),
                raw=raw.decode("utf-8", "replace"),
                body=body,
                status=status or None,
                fault=None
                if fault is None
                else (f"status:{fault.status}" if fault.status else fault.kind),
                problems=cfn_response_problems(raw, handed[1] if handed else None),
                time=time.time(),
            )
            self._puts.append(put)
            self._changed.notify_all()
        return fault, status

    def set_stack_status(self, stack_id: str, status: str) -> None:
        """What DescribeStacks shows for ``stack_id`` from now on."""
        self.stack_statuses[stack_id] = status

    def describe_stacks(self, raw: bytes) -> tuple[int, bytes]:
        """CloudFormation's DescribeStacks (query protocol, XML), from ``stack_statuses``."""
        form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        stack_id = form.get("StackName", "")
        status = self.stack_statuses.get(stack_id)
        if form.get("Action") != "DescribeStacks" or status is None:
            error = (
                "<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code>"
                f"<Message>Stack with id {escape(stack_id)} does not exist</Message>"
                "</Error></ErrorResponse>"
            )
            return 400, error.encode()
        body = (
            '<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">'
            "<DescribeStacksResult><Stacks><member>"
            f"<StackId>{escape(stack_id)}</StackId>"
            f"<StackName>{escape(stack_id.split('/')[-2] if '/' in stack_id else stack_id)}</StackName>"
            "<CreationTime>2026-01-01T00:00:00Z</CreationTime>"
            f"<StackStatus>{escape(status)}</StackStatus>"
            "</member></Stacks></DescribeStacksResult>"
            "<ResponseMetadata><RequestId>local</RequestId></ResponseMetadata>"
            "</DescribeStacksResponse>"
        )
        return 200, body.encode()

    def control(self, method: str, target: str, raw: bytes) -> tuple[int, Any]:
        """The ``/_receiver/...`` control API, for tests driving a subprocess receiver."""
        parts = urlsplit(target)
        path = parts.path[len(CONTROL_PREFIX) :].rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        payload = json.loads(raw) if raw.strip() else {}
        if (method, path) == ("GET", "/health"):
            return 200, {"ok": True}
        if (method, path) == ("POST", "/urls"):
            return 200, {"url": self.url_for(payload["name"], event=payload.get("event"))}
        if (method, path) == ("GET", "/requests"):
            return 200, {"requests": [p.to_dict() for p in self.requests(query.get("path"))]}
        if (method, path) == ("POST", "/faults"):
            times = int(payload.get("times", 1))
            if "status" in payload:
                self.fail_next(int(payload["status"]), times)
            elif "hang" in payload:
                self.hang_next(float(payload["hang"]), times)
            elif payload.get("reset"):
                self.reset_next(times)
            return 200, {"pending": self.pending_faults()}
        if (method, path) == ("DELETE", "/faults"):
            self.clear_faults()
            return 200, {}
        if (method, path) == ("POST", "/reset"):
            self.reset()
            return 200, {}
        if (method, path) == ("POST", "/stack-status"):
            self.set_stack_status(payload["stackId"], payload["status"])
            return 200, {}
        return 404, {"error": f"no control route {method} {parts.path}"}


class _TLSServer(LoopbackHTTPServer):
    """Does the TLS handshake in the connection's own thread, so a silent client blocks nobody."""

    context: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            self.app.count_tls_failure()  # e.g. the client does not trust the CA
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


class _ReceiverHandler(JSONRequestHandler):
    server: _TLSServer
    timeout = 30

    def do_PUT(self) -> None:
        """A CloudFormation response: record it, then answer as S3 would (or not at all)."""
        receiver: ResponseReceiver = self.server.app
        raw = self.read_body()
        fault, status = receiver.receive(self.path, self.header_dict(), raw)
        if fault is not None and fault.kind == "reset":
            self.reset_connection()
        elif fault is not None and fault.kind == "hang":
            self.server.stopping.wait(fault.seconds)
            self.close_connection = True
        elif status == 200:
            self.send_response(200)
            self.send_header("ETag", '"' + hashlib.md5(raw).hexdigest() + '"')
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif fault is None:  # the strict URL check refused an altered pre-signed query
            self._send_s3_error(403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
        else:
            self._send_s3_error(status, *FAULT_STATUSES[status])

    def _send_s3_error(self, status: int, code: str, message: str) -> None:
        xml = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        data = ('<?xml version="1.0" encoding="UTF-8"?>\n' + xml).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        """DescribeStacks at the root (the function's CloudFormation client), else control."""
        if self.path != "/":
            self._control()
            return
        receiver: ResponseReceiver = self.server.app
        status, body = receiver.describe_stacks(self.read_body())
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _control(self) -> None:
        receiver: ResponseReceiver = self.server.app
        raw = self.read_body()
        if not self.path.startswith(CONTROL_PREFIX + "/"):
            self.send_json(404, {"error": "only PUT is accepted outside /_receiver/"})
            return
        try:
            status, body = receiver.control(self.command, self.path, raw)
        except (KeyError, ValueError, TypeError) as error:
            status, body = 400, {"error": str(error)}
        self.send_json(status, body)

    do_GET = do_DELETE = _control


class ReceiverControl:
    """Drives a receiver running in another process through ``/_receiver/``."""

    def __init__(self, base_url: str, ca_path: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.ca_path = ca_path
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=ca_path)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + CONTROL_PREFIX + path, data=data, method=method
        )
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout, context=self._context
            ) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raise RuntimeError(
                f"control {method} {path}: {error.code} {error.read().decode()}"
            ) from None

    def url_for(self, name: str, *, event: Mapping[str, Any] | None = None) -> str:
        """See :meth:`ResponseReceiver.url_for`."""
        return str(self._call("POST", "/urls", {"name": name, "event": event})["url"])

    def requests(self, path: str | None = None) -> list[ReceivedPut]:
        """Every PUT, oldest first."""
        suffix = "" if path is None else "?" + urlencode({"path": normalize_path(path)})
        return [ReceivedPut(**p) for p in self._call("GET", "/requests" + suffix)["requests"]]

    def wait_for(self, path: str, timeout: float = 10.0) -> ReceivedPut:
        """The first accepted PUT to ``path`` (polls every 50 ms)."""
        deadline = time.monotonic() + timeout
        while True:
            accepted = [p for p in self.requests(path) if p.accepted]
            if accepted:
                return accepted[0]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no accepted PUT to {normalize_path(path)} within {timeout} s")
            time.sleep(0.05)

    def fail_next(self, status: int = 500, times: int = 1) -> None:
        """See :meth:`ResponseReceiver.fail_next`."""
        self._call("POST", "/faults", {"status": status, "times": times})

    def hang_next(self, seconds: float, times: int = 1) -> None:
        """See :meth:`ResponseReceiver.hang_next`."""
        self._call("POST", "/faults", {"hang": seconds, "times": times})

    def reset_next(self, times: int = 1) -> None:
        """See :meth:`ResponseReceiver.reset_next`."""
        self._call("POST", "/faults", {"reset": True, "times": times})

    def clear_faults(self) -> None:
        """Drop pending faults."""
        self._call("DELETE", "/faults")

    def reset(self) -> None:
        """Forget URLs, records and faults."""
        self._call("POST", "/reset")

    def set_stack_status(self, stack_id: str, status: str) -> None:
        """See :meth:`ResponseReceiver.set_stack_status`."""
        self._call("POST", "/stack-status", {"stackId": stack_id, "status": status})


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m sirlocal.receiver [--host H] [--port P] [--lenient-urls]``."""
    parser = argparse.ArgumentParser(prog="python -m sirlocal.receiver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lenient-urls", action="store_true", help="accept altered query strings")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    JSONRequestHandler.verbose = args.verbose
    receiver = ResponseReceiver(args.host, args.port, strict_urls=not args.lenient_urls).start()
    ready = {
        "url": receiver.base_url,
        "port": receiver.port,
        "ca": receiver.ca_path,
        "pid": os.getpid(),
    }
    serve_until_signalled(ready, receiver.stop)


if __name__ == "__main__":
    main(sys.argv[1:])
