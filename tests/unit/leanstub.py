"""The scripted S3 stub of the lean-path unit tests and the botocore oracles they compare against: the stub
(``Stub``, ``running_stub``: canned replies, every request recorded), credentials, what botocore would send and
sign for the same call. Shared by ``test_leanpath`` and ``test_leanpath_aws``; a kit module, not a test module.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import botocore.auth
import botocore.credentials
from botocore.awsrequest import AWSRequest

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEJr//////////wEaDGF0b2tlbi8rPQ=="


@dataclass
class Creds:
    """What ``SigV4`` needs from botocore credentials (mutable, to model a rotation)."""

    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    token: str | None = None

    def get_frozen_credentials(self) -> Creds:
        return self


class _Raw:
    """A response body botocore can stream."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # read the request, then close the connection without answering
    delay: float = 0.0  # answer this late (to trip the read timeout)
    close_after: bool = False  # answer, then close the connection without saying so (an idle-timeout close)
    raw: bytes = b""  # written to the socket as is, instead of a generated answer


@dataclass
class Sent:
    """One request as it went on the wire (or, for botocore, as it would have)."""

    method: str
    target: str  # path?query
    headers: dict[str, str]  # lower-cased names
    body: bytes


class Stub:
    """The replies to give, in order (else ``default``), what was asked, and on how many TCP connections."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.replies: list[Reply] = []
        self.default: Callable[[Sent], Reply] | None = None
        self.seen: list[Sent] = []
        self.connections = 0
        self.closed = 0
        self.lock = threading.Lock()

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def next_reply(self, seen: Sent) -> Reply:
        with self.lock:
            self.seen.append(seen)
            if self.replies:
                return self.replies.pop(0)
        if self.default is not None:
            return self.default(seen)
        return Reply(599, b"<Error><Code>UnscriptedRequest</Code></Error>")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.stub.lock:
            self.server.stub.connections += 1

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.stub.lock:
                self.server.stub.closed += 1

    def log_message(self, *_: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        target = self.requestline.split(" ")[1]  # as sent: http.server rewrites a leading "//" in self.path
        reply = self.server.stub.next_reply(Sent(self.command, target, headers, body))
        if reply.drop:
            self.close_connection = True
            return
        if reply.delay:
            time.sleep(reply.delay)
        if reply.raw:
            self.wfile.write(reply.raw)
            self.wfile.flush()
            self.close_connection = reply.close_after
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if not any(name.lower() == "content-length" for name in reply.headers):  # a HEAD says the object's
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)
        self.wfile.flush()
        if reply.close_after:
            self.close_connection = True

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: Stub

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a late answer to a client that gave up: expected here


@contextlib.contextmanager
def running_stub() -> Iterator[Stub]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.stub = Stub(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _answer_for(op: str) -> bytes:
    if op == "CopyObject":
        return b'<CopyObjectResult><ETag>"e"</ETag></CopyObjectResult>'
    if op == "DeleteObjects":
        return b"<DeleteResult></DeleteResult>"
    return b""


UNSIGNED_EXTRAS = {"user-agent", "amz-sdk-invocation-id", "amz-sdk-request", "content-length", "host"}


def assert_same_request(lean: Sent, boto: Sent, endpoint: str) -> None:
    """Same method, target, signed headers and Authorization; nothing botocore sends is missing."""
    assert lean.method == boto.method
    assert lean.target == boto.target
    ours = {k: v for k, v in lean.headers.items() if k not in UNSIGNED_EXTRAS}
    theirs = {k: v for k, v in boto.headers.items() if k not in UNSIGNED_EXTRAS}
    assert ours == theirs  # includes Authorization: same signed set, same signature
    assert lean.headers["host"] == urlsplit(endpoint).netloc  # the host botocore signed (from its URL)


def signed_by_botocore(sent: Sent, endpoint: str, creds: Creds, region: str) -> str:
    """The Authorization botocore's S3SigV4Auth computes for the request ``sent`` (as sent, minus its auth)."""
    unsigned = ("authorization", "host", "user-agent", "content-length")  # framing, added after signing
    headers = {k: v for k, v in sent.headers.items() if k not in unsigned}
    headers.pop("x-amz-security-token", None)  # the signer sets it itself
    # botocore takes the payload hash from the request's own x-amz-content-sha256: recompute it from the body
    # instead, so a wrong hash sent by the lean path shows up as a mismatch.
    headers.pop("x-amz-content-sha256", None)
    amz_date = headers.pop("x-amz-date")
    request = AWSRequest(method=sent.method, url=endpoint + sent.target, headers=headers, data=sent.body)
    request.context["timestamp"] = amz_date
    frozen = botocore.credentials.Credentials(creds.access_key, creds.secret_key, creds.token)
    auth = botocore.auth.S3SigV4Auth(frozen, "s3", region)
    auth._modify_request_before_signing(request)
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    auth._inject_signature_to_request(request, signature)
    assert request.headers["X-Amz-Content-SHA256"] == sent.headers["x-amz-content-sha256"], "payload hash"
    return str(request.headers["Authorization"])


def error_xml(code: str, message: str = "") -> bytes:
    return f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
