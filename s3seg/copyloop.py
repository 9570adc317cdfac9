"""A batch's copy requests, many in flight from one thread: a selector loop over keep-alive connections.

Why: a worker process with one thread per request in flight spent 190-330 us of client CPU per CopyObject at
128-256 in flight (GIL hand-offs, futex wake-ups, one stack per thread); one thread driving non-blocking sockets
spends 80-90 us on the same requests (``scripts/bench_copyloop.py``). On a remote store, where hundreds must be
in flight, that is the difference between the client's CPU and the store's latency being the bound.

What it sends: only the first request of a move whose copy step starts with it (``moves.copy_first``), the
conditional CopyObject, built, signed and checked exactly as the lean path does it (``LeanPath.copy_request``,
``signed``, ``check``). What it decides: nothing of the protocol. A copy its answer alone proves
(``moves.proven_copy``) is the task's result; any other answer goes back to the worker's thread pool as a
``moves.SentCopy``, for ``copy_phase`` to go on from as if it had sent the request itself (a transport failure
is a retryable error there, so the retry knows the copy may have been applied). A task not sent goes back
unsent. Only throttling answers (503 SlowDown and the like) are retried here, paced by the worker's
``ThrottlePacer``, up to the lean path's number of attempts, holding the task's place in flight throughout as a
thread would.

In flight: at most the worker's ``Gate`` limit (adaptive concurrency) or a fixed number, counted with the pool's
threads, which pass the same gate. Over HTTP or HTTPS (TLS through ``ssl.SSLObject`` on memory buffers, with the
lean path's context: the same certificate checks), one pool of kept-alive connections per host (virtual-hosted
buckets on AWS each have theirs). Never with botocore's adaptive retry mode (its rate limiter blocks the
sender). ``S3SEG_COPYLOOP=0`` turns it off (benchmarks).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import os
import random
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from s3seg.concurrency import Gate, RateLimiter
from s3seg.crashpoints import crash_point
from s3seg.errors import StorageError
from s3seg.leanpath import (
    _EMPTY_SHA256,
    _IDLE_CHECK_SECONDS,
    _PACED_BACKOFF,
    LeanPath,
    ProtocolError,
    Response,
    Route,
    Transient,
    UseBotocore,
    _closed_by_peer,
    copy_etag,
    request_head,
)
from s3seg.moves import Options, Result, SentCopy, Task, copy_args, proven_copy
from s3seg.objects import quoted
from s3seg.s3errors import THROTTLE_CODES, THROTTLE_STATUS, THROTTLING_CODES

log = logging.getLogger(__name__)

OP = "CopyObject"
_MAX_HEAD = 65536  # bytes of status line and headers before an answer is refused as not HTTP
_SWEEP_SECONDS = 0.25  # how often requests past their timeout are looked for


def enabled_for(lean: LeanPath | None) -> bool:
    """Whether this process's copies may go through a ``CopyLoop`` at all."""
    return lean is not None and lean.enabled and lean.limiter is None and os.environ.get("S3SEG_COPYLOOP", "1") != "0"


@dataclass(eq=False, slots=True)
class _Item:
    task: Task
    sends: int = 0
    slot: int = 0  # the number in flight when this task took its place (0: it holds none)
    started: float = 0.0  # when it took its place: its latency sample runs from there, retries included
    error: StorageError | None = None  # the last throttling answer, while a retry waits
    route: Route | None = None


Host = tuple[str, int]


@dataclass(eq=False, slots=True)
class _Conn:
    sock: socket.socket
    host: Host
    tls: ssl.SSLObject | None = None
    incoming: ssl.MemoryBIO | None = None  # TLS: bytes read from the socket, for ``tls`` to decrypt
    outgoing: ssl.MemoryBIO | None = None  # TLS: bytes ``tls`` made, for the socket
    connected: bool = False  # TCP
    ready: bool = False  # connected, and the TLS handshake done (if TLS)
    used: float = 0.0  # when its last exchange ended
    item: _Item | None = None
    request: bytes = b""  # the request, until it goes out
    request_out: bool = False  # the request went to the socket (from then on it may be applied)
    out: bytes = b""  # bytes for the socket not yet sent
    buf: bytearray = field(default_factory=bytearray)
    deadline: float = 0.0
    events: int = 0  # what the selector waits for on it


class _Closed(OSError):
    """The connection ended before a whole answer."""


class CopyLoop:
    """Sends ``copy_first`` tasks' CopyObjects for one worker process (``run`` may be called from several
    threads at once: each call has its own selector; idle connections are shared under a lock)."""

    def __init__(
        self,
        lean: LeanPath,
        opts: Options,
        *,
        gate: Gate | None,
        fixed: int,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lean = lean
        self.opts = opts
        self.gate = gate
        self.fixed = max(1, fixed)  # without a gate: the most in flight per ``run``
        self.limiter = limiter
        self._clock = clock
        self._idle: dict[Host, list[_Conn]] = {}
        self._lock = threading.Lock()
        self._addrs: dict[Host, tuple[socket.AddressFamily, Any]] = {}
        self.sent = 0  # requests sent (all runs; for tests and reports)

    def usable(self) -> bool:
        return self.lean.enabled

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.sock.close()

    def run(
        self,
        tasks: list[Task],
        hand_over: Callable[[Task, SentCopy | None], None],
        may_start: Callable[[Task], Result | None],
        on_result: Callable[[Result], None] | None = None,
    ) -> dict[int, Result]:
        """Copy ``tasks`` (all ``copy_first``); returns the results of those finished here. Each other task is
        given to ``hand_over`` (with what its copy request was answered, or None if it was not sent) as soon as
        that is known. ``may_start`` is asked before a task's first request: a Result means "do not start it"."""
        return _Run(self, tasks, hand_over, may_start, on_result).go()

    # -- connections (shared between runs) -------------------------------------------------------------------
    def _take(self, host: Host) -> _Conn:
        now = self._clock()
        while True:
            with self._lock:
                conns = self._idle.get(host)
                conn = conns.pop() if conns else None
            if conn is None:
                return self._connect(host)
            if now - conn.used <= _IDLE_CHECK_SECONDS or not _closed_by_peer(conn.sock):
                return conn
            conn.sock.close()  # the server closed it while it was idle

    def _give_back(self, conn: _Conn) -> None:
        with self._lock:
            self._idle.setdefault(conn.host, []).append(conn)

    def _connect(self, host: Host) -> _Conn:
        addr = self._addrs.get(host)
        if addr is None:
            found = socket.getaddrinfo(host[0], host[1], type=socket.SOCK_STREAM)[0]
            addr = self._addrs[host] = (found[0], found[4])
        sock = socket.socket(addr[0], socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex(addr[1])
            if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                raise OSError(code, os.strerror(code))
        except BaseException:
            sock.close()
            raise
        conn = _Conn(sock, host, connected=code == 0)
        context = self.lean.tls
        if context is not None:
            conn.incoming, conn.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            conn.tls = context.wrap_bio(conn.incoming, conn.outgoing, server_hostname=host[0])
        return conn


class _Run:
    """One ``CopyLoop.run``: the state of one batch's requests."""

    def __init__(
        self,
        loop: CopyLoop,
        tasks: list[Task],
        hand_over: Callable[[Task, SentCopy | None], None],
        may_start: Callable[[Task], Result | None],
        on_result: Callable[[Result], None] | None,
    ) -> None:
        self.loop, self.lean, self.clock = loop, loop.lean, loop._clock
        self.hand_over, self.may_start, self.on_result = hand_over, may_start, on_result
        self.todo: deque[_Item] = deque(_Item(t) for t in tasks)
        self.waiting: list[tuple[float, int, _Item]] = []  # (when due, order, item): paced sends and retries
        self.order = itertools.count()
        self.busy: set[_Conn] = set()  # a request out, its answer awaited
        self.free: dict[Host, list[_Conn]] = {}  # kept alive, nothing out (registered: a close is noticed)
        self.done: dict[int, Result] = {}
        self.held = 0  # places in flight held by this run (sent, waiting to be re-sent or paced)
        self.sel = selectors.DefaultSelector()

    def go(self) -> dict[int, Result]:
        try:
            self._loop()
        except BaseException as exc:
            if not isinstance(exc, Exception):
                self._abandon(exc)
                raise
            log.exception("the copy loop failed; its copies go back to the thread pool")
            self._abandon(exc)
        finally:
            for conns in self.free.values():
                for conn in conns:
                    self.sel.unregister(conn.sock)
                    self.loop._give_back(conn)
            self.free.clear()
            self.sel.close()
        return self.done

    # -- the loop ---------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        next_sweep = self.clock() + _SWEEP_SECONDS
        while self.todo or self.waiting or self.busy:
            self._start()
            now = self.clock()
            timeout = _SWEEP_SECONDS if self.busy else 0.005  # nothing out: a place may free up in the pool
            if self.waiting:
                timeout = min(timeout, max(0.0, self.waiting[0][0] - now))
            if not self.busy and not any(self.free.values()):
                if self.waiting:
                    time.sleep(timeout)
                elif self.todo:
                    time.sleep(0.005)  # every place in flight is taken by the pool's threads
                continue
            for key, mask in self.sel.select(timeout):
                self._event(key.data, mask)
            now = self.clock()
            if now >= next_sweep:
                next_sweep = now + _SWEEP_SECONDS
                for conn in [c for c in self.busy if now > c.deadline]:
                    what = "read" if conn.request_out else "connect"
                    self._failed(conn, TimeoutError(f"{what} timed out"))

    def _place(self) -> int | None:
        """Take one place in flight (the gate's, or under the fixed number), or None at the limit."""
        gate = self.loop.gate
        if gate is not None:
            return gate.try_enter()
        if self.held + len(self.busy) >= self.loop.fixed:
            return None
        return self.held + len(self.busy) + 1

    def _release(self, item: _Item) -> None:
        if item.slot:
            if self.loop.gate is not None:
                self.loop.gate.leave((item.started, item.slot))
            item.slot = 0

    def _start(self) -> None:
        """Send what is due, then new tasks, while there are places in flight."""
        now = self.clock()
        while self.waiting and self.waiting[0][0] <= now:
            _, _, item = heapq.heappop(self.waiting)
            self.held -= 1
            if not self.lean.enabled:
                self._give_back_item(item)
                continue
            self._send(item)
        while self.todo and self.lean.enabled:
            item = self.todo[0]
            refusal = self.may_start(item.task)
            if refusal is not None:
                self.todo.popleft()
                self._finish(refusal)
                continue
            slot = self._place()
            if slot is None:
                return
            self.todo.popleft()
            item.slot, item.started = slot, self.clock()
            self._pace(item, 0.0)
        while self.todo and not self.lean.enabled:  # turned off (by another thread): the pool does the rest
            self.hand_over(self.todo.popleft().task, None)

    def _pace(self, item: _Item, backoff: float) -> None:
        """Send ``item`` now, or after its back-off and the pacers' wait."""
        wait = backoff
        gate = self.loop.gate
        if gate is not None and gate.pacer is not None:
            wait += gate.pacer.reserve()
        if self.loop.limiter is not None:
            wait += self.loop.limiter.reserve()
        if wait > 0:
            heapq.heappush(self.waiting, (self.clock() + wait, next(self.order), item))
            self.held += 1
        else:
            self._send(item)

    def _send(self, item: _Item) -> None:
        task = item.task
        try:
            route, path, headers = self.lean.copy_request(
                task.src_bucket, task.src_key, task.dst_bucket, task.dst_key, copy_args(task, self.loop.opts)
            )
            signed = self.lean.signed(route, "PUT", path, "", headers, _EMPTY_SHA256)
            data = request_head("PUT", path, signed, None)
        except UseBotocore:
            self._give_back_item(item)
            return
        host = (route.host, route.port)
        free = self.free.get(host)
        try:
            conn = free.pop() if free else self._new_conn(host)
        except OSError:
            self._give_back_item(item)  # nothing sent: the pool's copy step connects (and retries) itself
            return
        item.sends += 1
        item.route = route
        self.loop.sent += 1
        conn.item, conn.request, conn.request_out = item, data, False
        conn.buf.clear()
        self.busy.add(conn)
        try:
            if conn.ready:
                self._begin(conn)
            else:
                conn.deadline = self.clock() + self.lean.connect_timeout  # the TCP connect and the TLS handshake
                if conn.connected:
                    self._handshake(conn)
        except OSError as exc:  # a kept-alive connection reset under us: this task alone, not the whole run
            self._failed(conn, exc)

    def _new_conn(self, host: Host) -> _Conn:
        conn = self.loop._take(host)
        conn.events = selectors.EVENT_READ if conn.ready else selectors.EVENT_WRITE
        self.sel.register(conn.sock, conn.events, conn)
        return conn

    # -- I/O ---------------------------------------------------------------------------------------------------
    def _event(self, conn: _Conn, mask: int) -> None:
        try:
            if not conn.connected:
                code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code))
                conn.connected = True
                self._handshake(conn)
            elif mask & selectors.EVENT_WRITE and conn.out:
                self._flush(conn)
            elif mask & selectors.EVENT_READ:
                self._read(conn)
        except OSError as exc:  # ssl.SSLError (a refused certificate included) is one
            self._failed(conn, exc)

    def _handshake(self, conn: _Conn) -> None:
        """Go on with the TLS handshake (plain HTTP: none); once done, send the request."""
        if conn.tls is not None:
            assert conn.outgoing is not None
            try:
                conn.tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            conn.out += conn.outgoing.read()
            if not done:
                self._flush(conn)
                return
        conn.ready = True
        self._begin(conn)

    def _begin(self, conn: _Conn) -> None:
        """Send the request: from here on it may be applied, whatever happens to its answer."""
        if conn.tls is not None:
            assert conn.outgoing is not None
            conn.tls.write(conn.request)
            conn.out += conn.outgoing.read()
        else:
            conn.out += conn.request
        conn.request, conn.request_out = b"", True
        conn.deadline = self.clock() + self.lean.read_timeout
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            n = conn.sock.send(conn.out) if conn.out else 0
        except BlockingIOError:
            n = 0
        conn.out = conn.out[n:]
        events = selectors.EVENT_WRITE if conn.out else selectors.EVENT_READ
        if events != conn.events:
            conn.events = events
            self.sel.modify(conn.sock, events, conn)

    def _received(self, conn: _Conn) -> tuple[bytes, bool] | None:
        """(plain bytes, the connection ended) from one read of the socket; None: nothing yet (TLS records)."""
        try:
            raw = conn.sock.recv(65536)
        except BlockingIOError:
            return None
        if conn.tls is None:
            return raw, not raw
        assert conn.incoming is not None
        if raw:
            conn.incoming.write(raw)
        else:
            conn.incoming.write_eof()
        if not conn.ready:
            if not raw:
                raise _Closed("the server closed the connection during the TLS handshake")
            self._handshake(conn)
            return None
        pieces: list[bytes] = []
        ended = not raw
        while True:
            try:
                piece = conn.tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # close_notify, or the end without one
                ended = True
                break
            if not piece:
                ended = True
                break
            pieces.append(piece)
        return b"".join(pieces), ended

    def _read(self, conn: _Conn) -> None:
        got = self._received(conn)
        if got is None:
            return
        data, ended = got
        if conn.item is None:  # an idle connection spoke: the server closed it (or sent what was not asked)
            if data or ended:
                self.free[conn.host].remove(conn)
                self._drop(conn)
            return
        conn.buf += data
        answer = parse_answer(conn.buf, eof=ended)
        if answer is None:
            if ended:
                where = "inside the answer" if conn.buf else "without answering"
                raise _Closed(f"the server closed the connection {where}")
            return
        response, keep = answer
        keep = keep and not ended
        item = conn.item
        conn.item = None
        self.busy.discard(conn)
        conn.used = self.clock()
        if keep:
            self.free.setdefault(conn.host, []).append(conn)
        else:
            self._drop(conn)
        self._answered(item, response)

    def _failed(self, conn: _Conn, exc: OSError) -> None:
        item = conn.item
        conn.item = None
        self.busy.discard(conn)
        free = self.free.get(conn.host, [])
        if conn in free:
            free.remove(conn)
        self._drop(conn)
        if item is None:
            return
        if not conn.request_out:  # no connection (refused, timed out, a certificate refused): never sent
            item.sends -= 1
            self._give_back_item(item)
        else:
            self._outcome(item, error=_transport(item.task, exc, item.sends))

    def _drop(self, conn: _Conn) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn.sock)
        conn.sock.close()

    # -- answers -------------------------------------------------------------------------------------------------
    def _answered(self, item: _Item, r: Response) -> None:
        task, route = item.task, item.route
        assert route is not None
        try:
            r = self.lean.check(route, OP, task.dst_bucket, task.dst_key, r, copy=True, retried=item.sends > 1)
        except Transient as t:
            err = t.error
            throttled = err.status in THROTTLE_STATUS or err.code in THROTTLE_CODES or err.code in THROTTLING_CODES
            if throttled and item.sends < self.lean.max_attempts:
                item.error = err
                # The pacer spaces the retry; the place in flight stays this task's, as a thread's would.
                self._pace(item, random.random() * min(_PACED_BACKOFF, 2.0 ** (item.sends - 1)))
                return
            err.retried = item.sends > 1
            self._outcome(item, error=err)
            return
        except StorageError as err:
            self._outcome(item, error=err)
            return
        except UseBotocore:
            # Not applied (a redirect, a region or signing answer): botocore sends it, from the pool. After an
            # earlier throttled send, though, it counts as a failed try that may have been applied.
            if item.sends > 1 and item.error is not None:
                item.error.retried = True
                self._outcome(item, error=item.error)
            else:
                self._give_back_item(item)
            return
        crash_point("after-copy-request")  # the copy exists; the worker dies before anyone hears of it
        etag = quoted(copy_etag(r))  # as ``Storage.copy`` returns it (SeaweedFS drops the quotes)
        proven = proven_copy(task, self.loop.opts, etag)
        if proven is None:
            self._outcome(item, sent=SentCopy(etag=etag))
        else:
            self._release(item)
            self._finish(proven)

    def _outcome(self, item: _Item, *, error: StorageError | None = None, sent: SentCopy | None = None) -> None:
        """The pool goes on from this answer (``copy_phase`` with ``sent``)."""
        self._release(item)
        self.hand_over(item.task, sent if sent is not None else SentCopy(error=error))

    def _give_back_item(self, item: _Item) -> None:
        """Not sent (or sent and certainly not applied): the pool runs its copy step from the start."""
        self._release(item)
        if item.sends and item.error is not None:
            item.error.retried = True
            self.hand_over(item.task, SentCopy(error=item.error))
        else:
            self.hand_over(item.task, None)

    def _finish(self, result: Result) -> None:
        self.done[result.id] = result
        if self.on_result is not None:
            self.on_result(result)

    def _abandon(self, exc: BaseException) -> None:
        """The loop itself failed: every task not finished goes to the pool; one in flight may have been copied."""
        for conn in list(self.busy):
            item = conn.item
            conn.item = None
            self._drop(conn)
            if item is not None:
                self._outcome(item, error=_transport(item.task, OSError(f"copy loop: {exc!r}"), item.sends))
        self.busy.clear()
        while self.waiting:
            _, _, item = heapq.heappop(self.waiting)
            self._give_back_item(item)
        self.held = 0
        while self.todo:
            self._give_back_item(self.todo.popleft())


def _transport(task: Task, exc: OSError, sends: int) -> StorageError:
    """A request whose answer was not read whole: sent or not, applied or not, unknown (retryable)."""
    name, text = type(exc).__name__, str(exc) or "connection error"
    return StorageError(OP, task.dst_bucket, task.dst_key, name, text, retryable=True, retried=sends > 1)


def parse_answer(buf: bytearray, *, eof: bool) -> tuple[Response, bool] | None:
    """(the answer, whether the connection may be kept) once ``buf`` holds a whole HTTP/1.1 answer, else None.

    The same HTTP as ``leanpath.Connection`` reads: interim 1xx answers skipped, headers lower-cased and joined,
    the body by Content-Length, chunks, or the connection's end (``eof``). Bytes after the answer (nothing was
    asked) mean the connection is not kept. Raises ``ProtocolError`` for what is not HTTP.
    """
    head = _head(buf)
    if head is None:
        return None
    status, headers, keep, body_at = head
    if status in (204, 304):
        body, stop = b"", body_at
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        found = _chunked(buf, body_at)
        if found is None:
            if eof:
                raise _Closed("the server closed the connection inside a chunked answer")
            return None
        body, stop = found
    elif "content-length" in headers:
        try:
            n = int(headers["content-length"])
        except ValueError:
            raise ProtocolError(f"bad Content-Length: {headers['content-length']!r}") from None
        if len(buf) < body_at + n:
            if eof:
                raise _Closed(f"the server closed the connection after {len(buf) - body_at} of {n} bytes")
            return None
        body, stop = bytes(buf[body_at : body_at + n]), body_at + n
    else:
        if not eof:
            return None  # delimited by the server closing the connection
        return Response(status, headers, bytes(buf[body_at:])), False
    return Response(status, headers, body), keep and stop == len(buf)


def _head(buf: bytearray) -> tuple[int, dict[str, str], bool, int] | None:
    """(status, headers, keep-alive, where the body starts) of the first final answer in ``buf``, or None."""
    start = 0
    while True:
        end = buf.find(b"\r\n\r\n", start)
        if end < 0:
            if len(buf) - start > _MAX_HEAD:
                raise ProtocolError("an answer's headers are too long")
            return None
        lines = bytes(buf[start:end]).split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP status line: {lines[0][:100]!r}")
        status = int(parts[1])
        start = end + 4
        if not 100 <= status < 200:
            break  # else an interim answer (100 Continue): the real one follows
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError(f"not an HTTP header line: {line[:100]!r}")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    keep = parts[0] == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return status, headers, keep, start


def _chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """(body, end) of a whole chunked body from ``pos``, or None while it is incomplete."""
    chunks: list[bytes] = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        line = bytes(buf[pos:eol])
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size line: {line[:100]!r}") from None
        pos = eol + 2
        if size == 0:
            if buf[pos : pos + 2] == b"\r\n":
                return b"".join(chunks), pos + 2
            end = buf.find(b"\r\n\r\n", pos)  # trailers
            return None if end < 0 else (b"".join(chunks), end + 4)
        if len(buf) < pos + size + 2:
            return None
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise ProtocolError("a chunk does not end where its size says")
        chunks.append(bytes(buf[pos : pos + size]))
        pos += size + 2
