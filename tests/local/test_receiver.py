"""The HTTPS ResponseURL receiver, driven by stdlib clients over real TLS."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from sirlocal.receiver import ReceiverControl, ResponseReceiver, cfn_response_problems
from sirlocal.services import start_receiver_process

EVENT = {
    "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/demo/guid",
    "RequestId": "req-1",
    "LogicalResourceId": "Membership",
}
NAME = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo/guid|Membership|req-1"


def answer(**overrides: Any) -> bytes:
    body = {**EVENT, "Status": "SUCCESS", "PhysicalResourceId": "m-abcdef123456", "Data": {}}
    return json.dumps(body | overrides).encode()


def put(url: str, body: bytes, context: ssl.SSLContext, timeout: float = 5) -> int:
    """PUT like crhelper does (http.client, empty content-type, the URL's path+query verbatim)."""
    parts = urlsplit(url)
    connection = http.client.HTTPSConnection(parts.netloc, context=context, timeout=timeout)
    try:
        connection.request(
            "PUT", f"{parts.path}?{parts.query}", body=body, headers={"content-type": ""}
        )
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture
def receiver() -> Iterator[ResponseReceiver]:
    with ResponseReceiver() as running:
        yield running


def test_url_looks_presigned_and_names_the_request(receiver: ResponseReceiver) -> None:
    url = receiver.url_for(NAME)
    parts = urlsplit(url)
    assert parts.scheme == "https"
    assert parts.netloc == f"127.0.0.1:{receiver.port}"
    assert "%7CMembership%7Creq-1" in parts.path
    for key in ("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Expires=", "X-Amz-Signature="):
        assert key in parts.query
    assert receiver.url_for(NAME) != url  # a fresh signature each time


def test_put_is_recorded_and_awaitable(receiver: ResponseReceiver) -> None:
    url = receiver.url_for(NAME, event=EVENT)
    assert put(url, answer(), receiver.client_context()) == 200
    got = receiver.wait_for(url, timeout=2)
    assert got.body["Status"] == "SUCCESS"
    assert got.headers["content-type"] == ""
    assert got.problems == []
    assert receiver.wait_for(NAME, timeout=0).path == got.path  # by name, URL or path alike


def test_wait_for_times_out(receiver: ResponseReceiver) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        receiver.wait_for("never", timeout=0.1)
    assert time.monotonic() - started < 1


def test_urllib_trusts_the_ca_file(receiver: ResponseReceiver) -> None:
    request = urllib.request.Request(receiver.url_for("plain"), data=answer(), method="PUT")
    context = ssl.create_default_context(cafile=receiver.ca_path)
    with urllib.request.urlopen(request, context=context, timeout=5) as response:
        assert response.status == 200
        assert response.headers["ETag"].startswith('"')


def test_localhost_is_in_the_certificate(receiver: ResponseReceiver) -> None:
    url = receiver.url_for("by-host").replace("127.0.0.1", "localhost")
    assert put(url, answer(), receiver.client_context()) == 200


def test_untrusted_client_fails_the_handshake(receiver: ResponseReceiver) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        put(receiver.url_for("x"), answer(), ssl.create_default_context())
    assert receiver.requests() == []


def test_child_process_trusts_it_through_ssl_cert_file(receiver: ResponseReceiver) -> None:
    url = receiver.url_for("child")
    code = "import sys,urllib.request as u; r=u.Request(sys.argv[1], data=b'{}', method='PUT'); print(u.urlopen(r).status)"
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    done = subprocess.run(  # noqa: PLW1510 - the assertion checks the outcome
        [sys.executable, "-c", code, url],
        env=env | receiver.env(),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.stdout.strip() == "200", done.stderr
    assert receiver.wait_for("child", timeout=1).body == {}


def test_altered_query_is_refused_like_s3(receiver: ResponseReceiver) -> None:
    url = receiver.url_for(NAME)
    path, query = url.split("?")
    assert put(f"{path}?{query.replace('%2F', '/')}", answer(), receiver.client_context()) == 403
    assert receiver.requests(NAME)[0].status == 403
    assert receiver.responses(NAME) == []


@pytest.mark.parametrize("status", [500, 503, 429, 403])
def test_fail_next_n(receiver: ResponseReceiver, status: int) -> None:
    url = receiver.url_for("faulty")
    receiver.fail_next(status, times=2)
    assert [put(url, answer(), receiver.client_context()) for _ in range(3)] == [
        status,
        status,
        200,
    ]
    records = receiver.requests("faulty")
    assert [r.fault for r in records] == [f"status:{status}", f"status:{status}", None]
    assert receiver.wait_for(url, timeout=1) is records[2]


def test_hang_never_answers(receiver: ResponseReceiver) -> None:
    url = receiver.url_for("slow")
    receiver.hang_next(0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        put(url, answer(), receiver.client_context(), timeout=0.2)
    assert time.monotonic() - started < 0.45
    assert receiver.requests("slow")[0].fault == "hang"
    assert put(url, answer(), receiver.client_context()) == 200


def test_reset_drops_the_connection(receiver: ResponseReceiver) -> None:
    url = receiver.url_for("reset")
    receiver.reset_next()
    with pytest.raises((ConnectionResetError, ssl.SSLError, http.client.RemoteDisconnected)):
        put(url, answer(), receiver.client_context())
    assert receiver.requests("reset")[0].status is None
    assert put(url, answer(), receiver.client_context()) == 200


def test_contract_problems_are_flagged(receiver: ResponseReceiver) -> None:
    url = receiver.url_for("bad", event=EVENT)
    put(url, answer(Status="OK", RequestId="other", Reason="x" * 5000), receiver.client_context())
    problems = receiver.wait_for(url, timeout=1).problems
    assert any("4096" in p for p in problems)
    assert "Status must be SUCCESS or FAILED" in problems
    assert "RequestId does not match the request" in problems
    assert cfn_response_problems(b"[]") == ["body is not a JSON object"]
    assert cfn_response_problems(b"nope") == ["body is not JSON"]


def test_subprocess_mode_and_control_api() -> None:
    with start_receiver_process() as process:
        control = ReceiverControl(process.info["url"], process.info["ca"])
        url = control.url_for(NAME, event=EVENT)
        context = ssl.create_default_context(cafile=process.info["ca"])
        control.fail_next(503)
        assert put(url, answer(), context) == 503
        assert put(url, answer(), context) == 200
        got = control.wait_for(url, timeout=2)
        assert got.body["RequestId"] == "req-1"
        assert [r.status for r in control.requests(NAME)] == [503, 200]
        control.reset()
        assert control.requests() == []
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(process.info["url"] + "/elsewhere", context=context, timeout=5)
    assert process.poll() is not None
    assert not os.path.exists(process.info["ca"])
