"""A fault-injecting HTTP proxy for S3 tests: stdlib only, threaded, loopback only, works across processes.

s3seg's worker processes connect to it by URL (``--endpoint-url http://127.0.0.1:PORT``); the test process
owns the proxy (a thread) and steers it while a run is going::

    with FaultProxy(upstream="http://127.0.0.1:5000", seed=7) as proxy:
        proxy.set(fail_before=0.1, lose_after=0.1, ops={"CopyObject", "DeleteObject", "DeleteObjects"})
        ... run s3seg against proxy.url ...
        proxy.set(storm=2.0)            # a 100% 503 SlowDown outage for the next 2 seconds
        proxy.counts["lose_after", "CopyObject"]

Faults, each drawn per request from a seeded RNG (so a failing run can be replayed):

* ``fail_before``: answer 500 InternalError or 503 SlowDown WITHOUT forwarding: the store never saw it.
* ``lose_after``: forward, let the store apply it, then lose the answer: close the connection without a
  response, or answer 500 InternalError instead of the real response. The client sees an error for a request
  that WAS applied: the case a retry turns into a 412 or a 404 of its own earlier success.
* ``storm``: for a time window every request (of the ``storm_ops``, default all) is answered 503 SlowDown
  without forwarding: an outage, or S3 throttling a hot prefix. ``storm_from_next=True`` starts the window at
  the next request instead of now (a subprocess takes a while to send its first one), ``storm_after=(op, n)``
  at the n-th request of ``op``.
* ``delay``: seconds added before forwarding each request (stretches a run so a random kill lands mid-way).
* ``refuse = (status, code, ops)``: every request of ``ops`` (``None``: all) is answered with that error
  (a missing bucket answered with 500 on every CopyObject, refused credentials: ``(403, "InvalidAccessKeyId",
  None)``), never forwarded; counted as ``refused``.
* ``hold()`` / ``release()``: requests wait before forwarding until released (freezes a run mid-way).

``ops`` restricts faults to the named S3 operations (``None``: every operation). Operations are recognised from
the request line and headers (``s3seg_lab.s3ops.operation``, shared with the counting proxy).

Counters: ``counts[(what, op)]`` with ``what`` in ``request`` (every request seen), ``forwarded``,
``fail_before``, ``lose_after``, ``storm``; ``mutations()`` counts forwarded requests that can change a bucket.

HTTP handling: HTTP/1.1 keep-alive on both sides (one upstream connection per client connection); request
bodies are read by Content-Length or, if chunked, forwarded chunk for chunk; upstream response bodies are read
whole and re-sent with a Content-Length (HEAD keeps the upstream Content-Length and sends no body). Headers pass
through unchanged, Host included, so SigV4 signatures made for the proxy's address still verify upstream.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from s3seg_lab.s3ops import MUTATING, operation

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection", "expect", "te"})


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request (the crash tests do that on purpose) is not an error worth printing."""


def _error_xml(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>faultproxy</RequestId></Error>"
    ).encode()


class FaultProxy:
    """See the module docstring. Start with ``start()`` or ``with``; ``url`` is what clients connect to."""

    def __init__(self, upstream: str, *, seed: int = 0) -> None:
        split = urllib.parse.urlsplit(upstream)
        assert split.scheme == "http" and split.hostname, upstream
        self.upstream_host = split.hostname
        self.upstream_port = split.port or 80
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.fail_before = 0.0
        self.lose_after = 0.0
        self.delay = 0.0
        self.ops: frozenset[str] | None = None
        self.storm_until = 0.0
        self._storm_pending = 0.0  # a storm that starts with the next request (``storm_from_next``)
        self._storm_after: tuple[str, int] | None = None  # ... or with the n-th request of an operation
        self.storm_ops: frozenset[str] | None = None
        self._in_flight = 0
        # (status, code, ops or None): answer every such request with this error, without forwarding it
        self.refuse: tuple[int, str, frozenset[str] | None] | None = None
        self._gate = threading.Event()  # cleared by hold(): requests wait before being forwarded
        self._gate.set()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread: threading.Thread | None = None
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- control (from the test thread) -------------------------------------------------------------------------
    def set(
        self,
        *,
        fail_before: float | None = None,
        lose_after: float | None = None,
        delay: float | None = None,
        ops: Iterable[str] | bool | None = False,
        storm: float | None = None,
        storm_from_next: bool = False,
        storm_after: tuple[str, int] | None = None,
        storm_ops: Iterable[str] | bool | None = False,
        seed: int | None = None,
    ) -> FaultProxy:
        """Change fault settings; arguments left out keep their value (``ops=None``: all operations)."""
        with self._lock:
            if fail_before is not None:
                self.fail_before = fail_before
            if lose_after is not None:
                self.lose_after = lose_after
            if delay is not None:
                self.delay = delay
            if ops is not False:
                self.ops = None if ops is None else frozenset(ops)  # type: ignore[arg-type]
            if storm is not None:
                self.storm_until = time.monotonic() + storm if storm > 0 else 0.0
                self._storm_pending = storm if storm > 0 and (storm_from_next or storm_after) else 0.0
                self._storm_after = storm_after
            if storm_ops is not False:
                self.storm_ops = None if storm_ops is None else frozenset(storm_ops)  # type: ignore[arg-type]
            if seed is not None:
                self._rng.seed(seed)
        return self

    def heal(self) -> FaultProxy:
        """No faults, no storm, no delay, no hold (the counters are kept)."""
        self.release()
        self.refuse = None
        return self.set(fail_before=0.0, lose_after=0.0, delay=0.0, storm=0.0, ops=None, storm_ops=None)

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()

    def total(self, what: str, ops: Iterable[str] | None = None) -> int:
        wanted = None if ops is None else set(ops)
        with self._lock:
            return sum(n for (w, op), n in self.counts.items() if w == what and (wanted is None or op in wanted))

    def mutations(self) -> int:
        """Forwarded requests that can change a bucket (what "zero S3 mutations" is checked against)."""
        return self.total("forwarded", MUTATING)

    def requests(self) -> int:
        return self.total("request")

    def hold(self) -> FaultProxy:
        """From now on every request waits (before forwarding) until ``release()``: freezes a run mid-way."""
        self._gate.clear()
        return self

    def release(self) -> FaultProxy:
        self._gate.set()
        return self

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being forwarded: a request that left before its client was killed still
        reaches the store, as on a real network; look at the bucket only after it has landed."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if self._in_flight == 0:
                    return True
            time.sleep(0.02)
        return False

    @property
    def storming(self) -> bool:
        return time.monotonic() < self.storm_until

    # -- the decision (one per request) ---------------------------------------------------------------------
    def _decide(self, op: str) -> str:
        with self._lock:
            self.counts["request", op] += 1
            trigger = self._storm_after
            if self._storm_pending and (
                trigger is None or (op == trigger[0] and self.counts["request", op] >= trigger[1])
            ):
                self.storm_until = time.monotonic() + self._storm_pending
                self._storm_pending = 0.0
            if time.monotonic() < self.storm_until and (self.storm_ops is None or op in self.storm_ops):
                self.counts["storm", op] += 1
                return "storm"
            if self.ops is not None and op not in self.ops:
                return "forward"
            roll = self._rng.random()
            if roll < self.fail_before:
                self.counts["fail_before", op] += 1
                return "fail_before_503" if self._rng.random() < 0.5 else "fail_before_500"
            if roll < self.fail_before + self.lose_after:
                self.counts["lose_after", op] += 1
                return "lose_close" if self._rng.random() < 0.5 else "lose_500"
            return "forward"

    def _count(self, what: str, op: str) -> None:
        with self._lock:
            self.counts[what, op] += 1

    # -- server -----------------------------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            upstream: http.client.HTTPConnection | None = None

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                self._handle()

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

            def _read_body(self) -> tuple[bytes, bool]:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    raw = bytearray()
                    while True:
                        line = self.rfile.readline(65537)
                        raw += line
                        size = int(line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while True:  # trailers, then the blank line
                                trailer = self.rfile.readline(65537)
                                raw += trailer
                                if trailer in (b"\r\n", b"\n", b""):
                                    return bytes(raw), True
                        raw += self.rfile.read(size + 2)
                length = int(self.headers.get("Content-Length") or 0)
                return (self.rfile.read(length) if length else b""), False

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes, *, head: bool) -> None:
                self.send_response_only(status)
                has_length = False
                for name, value in headers:
                    lname = name.lower()
                    if lname in _HOP_BY_HOP or lname in ("date", "server"):
                        continue
                    if lname == "content-length":
                        if not head:
                            continue  # re-computed below from the body actually sent
                        has_length = True
                    self.send_header(name, value)
                if not head:
                    self.send_header("Content-Length", str(len(body)))
                elif not has_length:
                    self.send_header("Content-Length", "0")
                self.end_headers()
                if not head and body:
                    self.wfile.write(body)
                self.wfile.flush()

            def _error(self, status: int, code: str, message: str, *, head: bool) -> None:
                body = b"" if head else _error_xml(code, message)
                self._reply(status, [("Content-Type", "application/xml")], body, head=head)

            def _forward(self, body: bytes, chunked: bool) -> tuple[int, list[tuple[str, str]], bytes]:
                for attempt in range(2):  # the upstream may have closed an idle keep-alive connection
                    if self.upstream is None:
                        self.upstream = http.client.HTTPConnection(
                            proxy.upstream_host, proxy.upstream_port, timeout=120
                        )
                    try:
                        conn = self.upstream
                        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                        for name, value in self.headers.items():
                            if name.lower() in _HOP_BY_HOP and not (chunked and name.lower() == "transfer-encoding"):
                                continue
                            conn.putheader(name, value)
                        conn.endheaders()
                        if body:
                            conn.send(body)
                        resp = conn.getresponse()
                        data = resp.read()
                        if resp.will_close:
                            conn.close()
                            self.upstream = None
                        return resp.status, list(resp.getheaders()), data
                    except (ConnectionError, http.client.HTTPException, OSError):
                        if self.upstream is not None:
                            self.upstream.close()
                        self.upstream = None
                        if attempt == 1:
                            raise
                raise AssertionError("unreachable")

            def _handle(self) -> None:
                body, chunked = self._read_body()
                head = self.command == "HEAD"
                op = operation(self.command, self.path, self.headers)
                decision = proxy._decide(op)
                refuse = proxy.refuse
                if refuse is not None and (refuse[2] is None or op in refuse[2]):
                    proxy._count("refused", op)
                    self._error(refuse[0], refuse[1], f"refused by faultproxy ({refuse[1]})", head=head)
                    return
                if decision == "storm":
                    self._error(503, "SlowDown", "Please reduce your request rate. (faultproxy storm)", head=head)
                    return
                if decision == "fail_before_503":
                    self._error(503, "SlowDown", "Please reduce your request rate. (faultproxy)", head=head)
                    return
                if decision == "fail_before_500":
                    self._error(500, "InternalError", "We encountered an internal error. (faultproxy)", head=head)
                    return
                with proxy._lock:
                    proxy._in_flight += 1
                try:
                    proxy._gate.wait()
                    if proxy.delay:
                        time.sleep(proxy.delay)
                    status, headers, data = self._forward(body, chunked)
                except (ConnectionError, http.client.HTTPException, OSError):
                    self._error(502, "BadGateway", "upstream unreachable (faultproxy)", head=head)
                    self.close_connection = True
                    return
                finally:
                    with proxy._lock:
                        proxy._in_flight -= 1
                proxy._count("forwarded", op)
                if decision == "lose_close":
                    # Applied upstream; the client gets no answer at all.
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if decision == "lose_500":
                    self._error(500, "InternalError", "We encountered an internal error. (faultproxy)", head=head)
                    return
                self._reply(status, headers, data, head=head)

        return Handler

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="faultproxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
