"""A latency-bound, in-memory fake S3 for benchmarks and tests (stdlib only, asyncio, 127.0.0.1 only).

It answers the requests s3seg, s5cmd and boto3 send for a move, and enforces the conditions s3seg relies on:

- CopyObject: ``x-amz-copy-source-if-match`` (412 when the source's ETag differs), ``If-None-Match: *`` and
  ``If-Match`` on the destination (412); 404 NoSuchKey for an absent source.
- PutObject: ``If-None-Match: *`` (412 when the key exists) and ``If-Match`` (412 mismatch, 404 absent): the
  compare-and-set a lease needs. Bodies up to ``--max-body-bytes`` are kept (GetObject returns them); larger
  ones keep only size and ETag (GetObject then returns zeros of the right size).
- DeleteObject ``If-Match`` (412 mismatch, 404 absent); DeleteObjects with a per-object ``ETag`` (per-key
  PreconditionFailed / NoSuchKey errors), ``Quiet``, and the 1,000-key limit (MalformedXML).
- HeadObject, GetObject, ListObjectsV2 (prefix, delimiter, max-keys, start-after, continuation tokens,
  ``encoding-type=url``), CreateBucket, HeadBucket, GetObjectTagging (empty), GetBucketLocation.
  Anything else: 501 NotImplemented. Signatures are not checked.

Every answer (503s included) waits ``delay`` +- ``jitter`` ms on an event-loop timer first, so a remote store's
latency costs no CPU here: what a benchmark measures is the client's concurrency and CPU. With ``rate``, a token
bucket (burst ``rate / 20``) answers 503 SlowDown to requests above that rate, as S3 does above its per-prefix
limit. The store records requests per operation, throttled requests and the peak number of requests in flight.

Per object it keeps a small slotted record (ETag, size, mtime, optional body): a million 1 KiB objects seeded
through the admin call take ~250 MB.

With ``FAKES3_TRACE=path`` in its environment the store appends one line per request to that file (answer time,
arrival, operation, status, method, target): where a run's time goes, request by request.

Admin calls (never delayed, never throttled, never counted), on the path ``/_fake/...`` (not a bucket name):

- ``GET  /_fake/stats``   -> JSON ``{"requests": {op: n}, "throttled": n, "peak_in_flight": n, "in_flight": n,
  "busy_seconds": s, "cpu_seconds": s (the store's own CPU since the last reset), "first_at"/"last_at": wall-clock
  time of the first request's arrival and the last answer,
  "objects": n}`` (``busy_seconds`` / wall time = the mean number of requests in flight)
- ``POST /_fake/reset``   -> zero the counters (objects stay)
- ``POST /_fake/config``  JSON ``{"delay_ms", "jitter_ms", "rate"}`` (any subset; rate 0 = unlimited)
- ``POST /_fake/seed``    JSON ``{"bucket", "keys": [...], "size"}``: create the bucket and the objects at once

Run it standalone (prints ``PORT <n>`` and serves until killed), or ``FakeS3(...).start()`` in a thread::

    python -m s3seg_lab.fakes3 --delay-ms 50 --jitter-ms 5 --rate 1000     # from the repo root
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import contextlib
import email.utils
import hashlib
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.etree import ElementTree

_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


class Obj:
    __slots__ = ("body", "etag", "mtime", "size")

    def __init__(self, etag: str, size: int, mtime: float, body: bytes | None) -> None:
        self.etag, self.size, self.mtime, self.body = etag, size, mtime, body


class Bucket:
    """Objects by key, plus a key list sorted lazily (rebuilt on the first listing after a write)."""

    __slots__ = ("_dirty", "_sorted", "objects")

    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}
        self._sorted: list[str] = []
        self._dirty = False

    def put(self, key: str, obj: Obj) -> None:
        if key not in self.objects:
            self._dirty = True
        self.objects[key] = obj

    def delete(self, key: str) -> bool:
        if self.objects.pop(key, None) is None:
            return False
        self._dirty = True
        return True

    def keys_from(self, prefix: str, after: str) -> tuple[list[str], int]:
        """The sorted keys and the index of the first one >= ``prefix`` and > ``after``."""
        if self._dirty:
            self._sorted = sorted(self.objects)
            self._dirty = False
        keys = self._sorted
        return keys, max(bisect.bisect_left(keys, prefix), bisect.bisect_right(keys, after) if after else 0)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``take`` says whether one was there."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 20)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Request:
    __slots__ = ("body", "bucket", "headers", "key", "method", "query")

    def __init__(self, method: str, bucket: str, key: str, query: dict[str, str], headers: dict[str, str],
                 body: bytes) -> None:  # fmt: skip
        self.method, self.bucket, self.key, self.query = method, bucket, key, query
        self.headers, self.body = headers, body


Reply = tuple[int, dict[str, str], bytes]
_REASONS = {200: "OK", 204: "No Content", 206: "Partial Content", 400: "Bad Request", 404: "Not Found",
            409: "Conflict", 412: "Precondition Failed", 501: "Not Implemented", 503: "Slow Down"}  # fmt: skip


def _error(status: int, code: str, message: str, resource: str = "") -> Reply:
    body = f"{_XML_HEAD}<Error><Code>{code}</Code><Message>{_esc(message)}</Message><Resource>{_esc(resource)}"
    body += "</Resource><RequestId>fake</RequestId></Error>"
    return status, {"Content-Type": "application/xml"}, body.encode()


def _xml(body: str, status: int = 200, extra: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/xml", **(extra or {})}, (_XML_HEAD + body).encode()


def decode_aws_chunked(data: bytes) -> bytes:
    """The payload of an ``aws-chunked`` body (chunk signatures and trailers dropped)."""
    out, pos = bytearray(), 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";", 1)[0], 16)
        pos = end + 2
        if size == 0:
            return bytes(out)
        out += data[pos : pos + size]
        pos += size + 2


class FakeS3:
    """The store's state and request handling; ``serve`` runs it on an asyncio loop."""

    def __init__(self, *, delay_ms: float = 0.0, jitter_ms: float = 0.0, rate: float = 0.0,
                 max_body_bytes: int = 4096, seed: int = 1) -> None:  # fmt: skip
        self.buckets: dict[str, Bucket] = {}
        self.max_body_bytes = max_body_bytes
        self.rng = random.Random(seed)
        self.configure(delay_ms=delay_ms, jitter_ms=jitter_ms, rate=rate)
        self.reset()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    # -- configuration and statistics ------------------------------------------------------------------------
    def configure(self, *, delay_ms: float | None = None, jitter_ms: float | None = None,
                  rate: float | None = None) -> None:  # fmt: skip
        if delay_ms is not None:
            self.delay = max(0.0, delay_ms) / 1000
        if jitter_ms is not None:
            self.jitter = max(0.0, jitter_ms) / 1000
        if rate is not None:
            self.bucket_limiter = TokenBucket(rate) if rate > 0 else None

    def reset(self) -> None:
        self.requests: Counter[str] = Counter()
        self.throttled = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.busy_seconds = 0.0  # the sum of every request's time in flight: / wall = the mean number in flight
        self._cpu_base = time.process_time()
        self.first_at = self.last_at = 0.0  # wall clock (time.time) of the first request's arrival, last answer

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "throttled": self.throttled,
            "peak_in_flight": self.peak_in_flight,
            "in_flight": self.in_flight,
            "busy_seconds": self.busy_seconds,
            "cpu_seconds": time.process_time() - self._cpu_base,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "objects": sum(len(b.objects) for b in self.buckets.values()),
        }

    def seed(self, bucket: str, keys: list[str], size: int) -> None:
        b = self.buckets.setdefault(bucket, Bucket())
        now = time.time()
        for key in keys:
            b.put(key, Obj('"' + hashlib.md5(key.encode()).hexdigest() + '"', size, now, None))

    # -- the S3 operations ----------------------------------------------------------------------------------
    def handle(self, r: Request) -> tuple[str, Reply]:
        """(operation name, reply) for one request."""
        if not r.bucket:
            return "ListBuckets", _xml(f'<ListAllMyBucketsResult xmlns="{_NS}"><Buckets>' + "".join(
                f"<Bucket><Name>{_esc(n)}</Name><CreationDate>{_iso(0)}</CreationDate></Bucket>" for n in self.buckets
            ) + "</Buckets></ListAllMyBucketsResult>")  # fmt: skip
        if not r.key:
            return self._bucket_op(r)
        b = self.buckets.get(r.bucket)
        if b is None:
            return r.method, _error(404, "NoSuchBucket", "The specified bucket does not exist", r.bucket)
        if r.method == "PUT" and "x-amz-copy-source" in r.headers:
            return "CopyObject", self._copy(r, b)
        if r.method == "PUT" and not r.query:
            return "PutObject", self._put(r, b)
        if r.method in ("GET", "HEAD") and "tagging" in r.query:
            return "GetObjectTagging", _xml(f'<Tagging xmlns="{_NS}"><TagSet></TagSet></Tagging>')
        if r.method in ("GET", "HEAD") and not r.query.keys() - {"versionId", "partNumber"}:
            return ("HeadObject" if r.method == "HEAD" else "GetObject"), self._get(r, b)
        if r.method == "DELETE" and not r.query:
            return "DeleteObject", self._delete(r, b)
        return r.method + "?", _error(501, "NotImplemented", "not implemented by the fake store")

    def _bucket_op(self, r: Request) -> tuple[str, Reply]:
        b = self.buckets.get(r.bucket)
        if r.method == "PUT" and not r.query:
            if b is not None:
                return "CreateBucket", _error(409, "BucketAlreadyOwnedByYou", "bucket exists", r.bucket)
            self.buckets[r.bucket] = Bucket()
            return "CreateBucket", (200, {"Location": "/" + r.bucket}, b"")
        if b is None:
            return r.method, _error(404, "NoSuchBucket", "The specified bucket does not exist", r.bucket)
        if r.method == "HEAD":
            return "HeadBucket", (200, {}, b"")
        if r.method == "GET" and "location" in r.query:
            return "GetBucketLocation", _xml(f'<LocationConstraint xmlns="{_NS}"></LocationConstraint>')
        if r.method == "GET" and (
            r.query.get("list-type") == "2" or not r.query.keys() - {"prefix", "delimiter", "max-keys", "encoding-type"}
        ):
            return "ListObjectsV2", self._list(r, b)  # fmt: skip
        if r.method == "POST" and "delete" in r.query:
            return "DeleteObjects", self._delete_many(r, b)
        if r.method == "DELETE" and not r.query:
            if b.objects:
                return "DeleteBucket", _error(409, "BucketNotEmpty", "bucket not empty", r.bucket)
            del self.buckets[r.bucket]
            return "DeleteBucket", (204, {}, b"")
        return r.method + "?", _error(501, "NotImplemented", "not implemented by the fake store")

    @staticmethod
    def _dest_conditions(r: Request, existing: Obj | None) -> Reply | None:
        if r.headers.get("if-none-match") == "*" and existing is not None:
            return _error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
        if_match = r.headers.get("if-match")
        if if_match is not None:
            if existing is None:
                return _error(404, "NoSuchKey", "The specified key does not exist.", r.key)
            if if_match.strip('"') != existing.etag.strip('"'):
                return _error(
                    412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold"
                )
        return None

    def _copy(self, r: Request, b: Bucket) -> Reply:
        src = unquote(r.headers["x-amz-copy-source"].split("?versionId=", 1)[0]).lstrip("/")
        src_bucket, _, src_key = src.partition("/")
        sb = self.buckets.get(src_bucket)
        obj = sb.objects.get(src_key) if sb is not None else None
        if obj is None:
            return _error(404, "NoSuchKey", "The specified key does not exist.", src)
        want = r.headers.get("x-amz-copy-source-if-match")
        if want is not None and want.strip('"') != obj.etag.strip('"'):
            return _error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
        refused = self._dest_conditions(r, b.objects.get(r.key))
        if refused is not None:
            return refused
        now = time.time()
        b.put(r.key, Obj(obj.etag, obj.size, now, obj.body))
        return _xml(f"<CopyObjectResult><LastModified>{_iso(now)}</LastModified><ETag>{_esc(obj.etag)}</ETag>"
                    "</CopyObjectResult>")  # fmt: skip

    def _put(self, r: Request, b: Bucket) -> Reply:
        refused = self._dest_conditions(r, b.objects.get(r.key))
        if refused is not None:
            return refused
        body = r.body
        if "aws-chunked" in r.headers.get("content-encoding", "") or r.headers.get(
            "x-amz-content-sha256", ""
        ).startswith("STREAMING-"):
            body = decode_aws_chunked(body)
        etag = '"' + hashlib.md5(body).hexdigest() + '"'
        b.put(r.key, Obj(etag, len(body), time.time(), body if len(body) <= self.max_body_bytes else None))
        return 200, {"ETag": etag}, b""

    def _get(self, r: Request, b: Bucket) -> Reply:
        obj = b.objects.get(r.key)
        if obj is None:
            return _error(404, "NoSuchKey", "The specified key does not exist.", r.key)
        if_match = r.headers.get("if-match")
        if if_match is not None and if_match.strip('"') != obj.etag.strip('"'):
            return _error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
        headers = {
            "ETag": obj.etag,
            "Last-Modified": email.utils.formatdate(obj.mtime, usegmt=True),
            "Content-Type": "binary/octet-stream",
            "Content-Length": str(obj.size),
        }
        if r.method == "HEAD":
            return 200, headers, b""
        return 200, headers, obj.body if obj.body is not None else bytes(obj.size)

    def _delete(self, r: Request, b: Bucket) -> Reply:
        if_match = r.headers.get("if-match")
        if if_match is not None:
            obj = b.objects.get(r.key)
            if obj is None:
                return _error(404, "NoSuchKey", "The specified key does not exist.", r.key)
            if if_match.strip('"') != obj.etag.strip('"'):
                return _error(
                    412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold"
                )
        b.delete(r.key)
        return 204, {}, b""

    def _delete_many(self, r: Request, b: Bucket) -> Reply:
        try:
            root = ElementTree.fromstring(r.body)
        except ElementTree.ParseError:
            return _error(400, "MalformedXML", "The XML you provided was not well-formed")
        quiet = False
        items: list[tuple[str, str | None]] = []
        for node in root:
            tag = node.tag.rpartition("}")[2]
            if tag == "Quiet":
                quiet = (node.text or "").strip().lower() == "true"
            elif tag == "Object":
                fields = {c.tag.rpartition("}")[2]: c.text or "" for c in node}
                items.append((fields.get("Key", ""), fields.get("ETag")))
        if not items or len(items) > 1000:
            return _error(400, "MalformedXML", "DeleteObjects takes 1 to 1,000 keys")
        out = [f'<DeleteResult xmlns="{_NS}">']
        for key, etag in items:
            obj = b.objects.get(key)
            if etag is not None and obj is None:
                out.append(f"<Error><Key>{_esc(key)}</Key><Code>NoSuchKey</Code><Message>absent</Message></Error>")
            elif etag is not None and obj is not None and etag.strip('"') != obj.etag.strip('"'):
                out.append(f"<Error><Key>{_esc(key)}</Key><Code>PreconditionFailed</Code>"
                           "<Message>ETag mismatch</Message></Error>")  # fmt: skip
            else:
                b.delete(key)
                if not quiet:
                    out.append(f"<Deleted><Key>{_esc(key)}</Key></Deleted>")
        out.append("</DeleteResult>")
        return _xml("".join(out))

    def _list(self, r: Request, b: Bucket) -> Reply:
        q = r.query
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        max_keys = max(0, min(1000, int(q.get("max-keys", "1000") or 1000)))
        url = q.get("encoding-type") == "url"
        token = q.get("continuation-token")
        after = base64.urlsafe_b64decode(token.encode()).decode() if token else q.get("start-after", "")
        keys, i = b.keys_from(prefix, after)
        contents: list[str] = []
        prefixes: list[str] = []
        last = ""
        truncated = False
        enc = (lambda s: quote(s, safe="/")) if url else _esc
        while i < len(keys):
            key = keys[i]
            if not key.startswith(prefix):
                break
            if len(contents) + len(prefixes) >= max_keys:
                truncated = True
                break
            if delimiter and (cut := key.find(delimiter, len(prefix))) >= 0:
                common = key[: cut + len(delimiter)]
                prefixes.append(f"<CommonPrefixes><Prefix>{enc(common)}</Prefix></CommonPrefixes>")
                last = common + "\U0010ffff"  # a token resumes past every key under the common prefix
                i = bisect.bisect_left(keys, common + "\U0010ffff", i)  # past every key under it
                continue
            o = b.objects[key]
            contents.append(f"<Contents><Key>{enc(key)}</Key><LastModified>{_iso(o.mtime)}</LastModified>"
                            f"<ETag>{_esc(o.etag)}</ETag><Size>{o.size}</Size>"
                            "<StorageClass>STANDARD</StorageClass></Contents>")  # fmt: skip
            last = key
            i += 1
        parts = [f'<ListBucketResult xmlns="{_NS}"><Name>{_esc(r.bucket)}</Name><Prefix>{enc(prefix)}</Prefix>',
                 f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>",
                 f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"]  # fmt: skip
        if delimiter:
            parts.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
        if url:
            parts.append("<EncodingType>url</EncodingType>")
        if token:
            parts.append(f"<ContinuationToken>{_esc(token)}</ContinuationToken>")
        if "start-after" in q:
            parts.append(f"<StartAfter>{enc(q['start-after'])}</StartAfter>")
        if truncated:
            nxt = base64.urlsafe_b64encode(last.encode()).decode()
            parts.append(f"<NextContinuationToken>{nxt}</NextContinuationToken>")
        return _xml("".join(parts) + "".join(contents) + "".join(prefixes) + "</ListBucketResult>")

    # -- admin -------------------------------------------------------------------------------------------------
    def admin(self, method: str, name: str, body: bytes) -> Reply:
        data = json.loads(body) if body else {}
        if name == "stats":
            pass
        elif name == "reset" and method == "POST":
            self.reset()
        elif name == "config" and method == "POST":
            self.configure(delay_ms=data.get("delay_ms"), jitter_ms=data.get("jitter_ms"), rate=data.get("rate"))
        elif name == "seed" and method == "POST":
            self.seed(data["bucket"], list(data["keys"]), int(data.get("size", 0)))
        else:
            return _error(404, "NoSuchAdminCall", name)
        return 200, {"Content-Type": "application/json"}, json.dumps(self.stats()).encode()

    # -- HTTP ------------------------------------------------------------------------------------------------
    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[Reply, float]:
        """(reply, seconds to wait before sending it) for one request; counts it (admin calls aside)."""
        parts = urlsplit(target)
        path = parts.path
        if path.startswith("/_fake/"):
            return self.admin(method, path[len("/_fake/") :], body), 0.0
        bucket, _, key = path.lstrip("/").partition("/")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        limiter = self.bucket_limiter
        if limiter is not None and not limiter.take():
            self.throttled += 1
            op, reply = "throttled", _error(503, "SlowDown", "Please reduce your request rate.")
        else:
            op, reply = self.handle(Request(method, unquote(bucket), unquote(key), query, headers, body))
        self.requests[op] += 1
        wait = self.delay + (self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
        if _TRACE is not None:
            now = time.time()
            _TRACE.write(f"{now + wait:.3f} {now:.3f} {op} {reply[0]} {method} {target[:120]}\n")
        return reply, max(0.0, wait)

    @staticmethod
    def encode(method: str, status: int, extra: dict[str, str], payload: bytes, close: bool) -> bytes:
        out = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}", f"Date: {_http_date()}",
               "Server: fakes3", "x-amz-request-id: fake"]  # fmt: skip
        out += [f"{k}: {v}" for k, v in extra.items()]
        if "Content-Length" not in extra:
            out.append(f"Content-Length: {len(payload)}")
        if close:
            out.append("Connection: close")
        return ("\r\n".join(out) + "\r\n\r\n").encode("utf-8") + (b"" if method == "HEAD" else payload)

    async def serve(self, port: int = 0, ready: threading.Event | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _HTTP(self, loop), "127.0.0.1", port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]
        if ready is not None:
            ready.set()
        async with self._server:
            with contextlib.suppress(asyncio.CancelledError):
                await self._server.serve_forever()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeS3:
        """Serve on a daemon thread (tests); ``stop`` ends it."""
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self.serve(0, ready)), daemon=True,
                                        name="fakes3")  # fmt: skip
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake S3 did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        if self._thread is not None:
            self._thread.join(5)


class _HTTP(asyncio.Protocol):
    """One connection: requests parsed from the bytes as they arrive, answered after the delay by a timer.

    An ``asyncio.Protocol`` rather than streams and a coroutine per request: the store's own CPU per request is
    what the benchmark must keep small (every microsecond here is one the client does not get on a shared
    machine), and a timer (``call_later``) costs less than a sleeping coroutine. One request at a time per
    connection, as HTTP/1.1 clients without pipelining send them; bytes of the next one wait in the buffer.
    """

    def __init__(self, store: FakeS3, loop: asyncio.AbstractEventLoop) -> None:
        self.store, self.loop = store, loop
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a request is being answered (its reply is waiting for the delay)
        self.continued = False  # "100 Continue" sent for the request in the buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next_or_close()

    def _next_or_close(self) -> None:
        try:
            self._next()
        except Exception:  # noqa: BLE001 - a request this fake cannot read (bad chunk size, admin JSON): drop it
            if self.transport is not None:
                self.transport.close()

    def _next(self) -> None:
        """Parse and start the request at the head of the buffer, if it is complete."""
        buf, transport = self.buf, self.transport
        if transport is None:
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > 1 << 20:
                transport.close()
            return
        try:
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
        except ValueError:
            transport.close()
            return
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parsed = _dechunk(buf, start)
            if parsed is None:
                self._continue(headers)
                return
            body, used = parsed
        else:
            n = int(headers.get("content-length", "0") or 0)
            if len(buf) < start + n:
                self._continue(headers)
                return
            body, used = bytes(buf[start : start + n]), start + n
        del buf[:used]
        self.continued = False
        store = self.store
        is_admin = target.startswith("/_fake/")
        started = time.monotonic()
        if not is_admin:
            if not store.first_at:
                store.first_at = time.time()
            store.in_flight += 1
            store.peak_in_flight = max(store.peak_in_flight, store.in_flight)
        (status, extra, payload), wait = store.answer(method, target, headers, body)
        close = headers.get("connection", "").lower() == "close"
        reply = store.encode(method, status, extra, payload, close)
        self.busy = True
        if wait > 0:
            self.loop.call_later(wait, self._send, reply, close, started, is_admin)
        else:
            self._send(reply, close, started, is_admin)

    def _continue(self, headers: dict[str, str]) -> None:
        if not self.continued and headers.get("expect", "").lower() == "100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.continued = True

    def _send(self, reply: bytes, close: bool, started: float, is_admin: bool) -> None:
        store = self.store
        if not is_admin:
            store.in_flight -= 1
            store.busy_seconds += time.monotonic() - started
            store.last_at = time.time()
        self.busy = False
        if self.transport is None:
            return
        self.transport.write(reply)
        if close:
            self.transport.close()
        elif self.buf:
            self._next_or_close()


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """(body, bytes used) of a complete chunked body starting at ``pos``; None while it is incomplete."""
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            while True:  # trailers, up to the empty line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                line_empty = eol == pos
                pos = eol + 2
                if line_empty:
                    return bytes(out), pos
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos : pos + size]
        pos += size + 2


_date_cache: list[Any] = [0, ""]
# FAKES3_TRACE=path: one line per request (answer time, arrival monotonic, operation, status, method, target).
_TRACE = open(os.environ["FAKES3_TRACE"], "a", buffering=1) if os.environ.get("FAKES3_TRACE") else None  # noqa: SIM115


def _http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, email.utils.formatdate(now, usegmt=True)]
    return str(_date_cache[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--delay-ms", type=float, default=0.0, help="added to every answer")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="uniform +- around the delay")
    p.add_argument("--rate", type=float, default=0.0, help="requests/s above which the store answers 503 SlowDown")
    p.add_argument("--max-body-bytes", type=int, default=4096, help="bodies up to this size are kept")
    a = p.parse_args()
    store = FakeS3(delay_ms=a.delay_ms, jitter_ms=a.jitter_ms, rate=a.rate, max_body_bytes=a.max_body_bytes)

    async def run() -> None:
        ready = threading.Event()
        task = asyncio.create_task(store.serve(a.port, ready))
        while not ready.is_set():
            await asyncio.sleep(0.01)
        print(f"PORT {store.port}", flush=True)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    sys.exit(0)


if __name__ == "__main__":
    main()
