"""A lean request path for the S3 calls a move makes per object: CopyObject, HeadObject, DeleteObject(s).

Why it exists: botocore spends about 1 ms of client CPU on every request doing generic work (event hooks,
model-driven validation, serialisation and parsing, endpoint rules) that moving millions of 1 KiB objects does
not need. On a machine whose cores are shared with the store, that CPU is the throughput. This path sends the
same requests, signed with the same SigV4 credentials, over one keep-alive connection per thread, for a
fifth of the CPU or less (measured in ``scripts/bench.py``; see docs/benchmarks.md).

Scope, deliberately narrow:

* Only explicitly configured endpoints with path-style addressing (S3-compatible stores, local servers). AWS
  itself keeps botocore, which follows region redirects and knows access points and directory buckets.
* Only plain requests: SSE-C, multipart copies and everything else go through botocore.
* Anything this path does not fully understand is handed back to botocore (``UseBotocore``): redirects,
  clock skew, expired tokens, and a refused signature (which also turns this path off for the process, with a
  warning). A 3xx/4xx answer means the request was not applied, so sending it again through botocore is safe.

Retries mirror botocore's standard mode (same attempts, capped exponential backoff with jitter) for transport
errors, 5xx, throttling and CopyObject's "200 with an error body". Errors come out as ``StorageError`` with the
same codes botocore's would, and ``retried`` set when an earlier attempt may have been applied, so the move
protocol's "a 412 after a retry may be our own copy" reasoning holds unchanged.

Must not: decide what a result means for a move (``moves``), or be used by anything but ``storage``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import random
import re
import select
import socket
import ssl
import threading
import time
import urllib.request
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from s3seg import __version__
from s3seg.errors import StorageError

log = logging.getLogger(__name__)

# Error codes that mean "try the same request again later" (botocore's standard mode retries these too).
RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
    }
)
# Answers botocore knows how to recover from and this path does not: hand the request to botocore.
_BOTOCORE_CODES = frozenset(
    {
        "AuthorizationHeaderMalformed",  # wrong signing region: botocore follows the hint
        "PermanentRedirect",
        "TemporaryRedirect",
        "IllegalLocationConstraintException",
        "RequestTimeTooSkewed",  # botocore corrects its clock
        "ExpiredToken",  # botocore refreshes credentials
        "TokenRefreshRequired",
        "InvalidToken",
    }
)
# The store rejects how this path signs or phrases requests: stop using it in this process.
_REFUSED_CODES = frozenset({"SignatureDoesNotMatch", "InvalidDigest"})
# Possibly about how this path signed: botocore's answer to the same request is the authoritative one.
_AUTH_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "403"})
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_SAFE = "-_.~/"  # botocore's percent_encode safe set for keys and copy sources
_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")
_ETAG = re.compile(rb"<ETag>([^<]*)</ETag>")
# XML escapes for DeleteObjects keys; \r must be a character reference or the parser turns it into \n.
_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;"})
_IDLE_CHECK_SECONDS = 2.0  # a kept-alive connection idle this long is checked for a server-side close first


class UseBotocore(Exception):
    """This request must be (re)sent through botocore.

    ``maybe_applied``: an earlier attempt may have landed. ``suspect``: the refusal may be about how this path
    signed; if botocore then succeeds, the caller turns this path off (``LeanPath.disable``).
    """

    def __init__(self, reason: str, *, maybe_applied: bool, suspect: bool = False) -> None:
        super().__init__(reason)
        self.maybe_applied = maybe_applied
        self.suspect = suspect


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


class _Transient(Exception):
    """An attempt failed in a way a retry may cure; ``error`` is what to raise when attempts run out."""

    def __init__(self, error: StorageError) -> None:
        super().__init__(str(error))
        self.error = error


class SigV4:
    """AWS Signature Version 4 for S3 requests (header auth), with the day's signing key cached."""

    def __init__(self, credentials: Any, region: str, service: str = "s3") -> None:
        self._credentials = credentials  # botocore Credentials: refreshable ones refresh themselves
        self.region = region
        self.service = service
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret: str, day: str) -> bytes:
        found = self._keys.get((secret, day))
        if found is None:
            key = hmac.new(("AWS4" + secret).encode(), day.encode(), hashlib.sha256).digest()
            for part in (self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, day): key}  # one live key: credentials rotate, days pass
            found = key
        return found

    def sign(
        self, method: str, host: str, path: str, query: str, headers: dict[str, str], payload_sha256: str, amz_date: str
    ) -> dict[str, str]:
        """Add x-amz-date, x-amz-content-sha256, the session token and Authorization to ``headers``.

        ``path`` is sent as is (S3 is signed without normalising or re-encoding the path); ``query`` is the
        canonical query string (``delete=`` for ``?delete``). Every header passed in is signed.
        """
        creds = self._credentials.get_frozen_credentials()
        headers["x-amz-date"] = amz_date
        headers["x-amz-content-sha256"] = payload_sha256
        if creds.token:
            headers["x-amz-security-token"] = creds.token
        canonical = {"host": host}
        for name, value in headers.items():
            canonical[name.lower()] = " ".join(value.split())
        names = sorted(canonical)
        signed = ";".join(names)
        request = "\n".join(
            (method, path, query, "".join(f"{n}:{canonical[n]}\n" for n in names), signed, payload_sha256)
        )
        day = amz_date[:8]
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(creds.secret_key, day), to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
        return headers


def amz_now() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def object_path(base: str, bucket: str, key: str) -> str:
    """The request path of an object, encoded exactly as botocore encodes it (path-style addressing)."""
    return f"{base}/{bucket}/{quote(key, safe=_SAFE)}"


def copy_source(bucket: str, key: str) -> str:
    """The x-amz-copy-source value botocore sends for ``CopySource={"Bucket": bucket, "Key": key}``."""
    return quote(f"{bucket}/{key}", safe=_SAFE)


def delete_body(items: list[tuple[str, str | None]]) -> bytes:
    """The DeleteObjects XML body for (key, etag-or-None) pairs (Quiet off: every key is answered)."""
    parts = ['<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">']
    for key, etag in items:
        parts.append(f"<Object><Key>{key.translate(_XML_ESCAPES)}</Key>")
        if etag:
            parts.append(f"<ETag>{etag.translate(_XML_ESCAPES)}</ETag>")
        parts.append("</Object>")
    parts.append("<Quiet>false</Quiet></Delete>")
    return "".join(parts).encode("utf-8")


def parse_delete_result(body: bytes) -> tuple[set[str], list[tuple[str, str, str]]]:
    """(deleted keys, [(key, code, message)]) from a DeleteObjects answer, namespace-agnostic."""
    root = ElementTree.fromstring(body)
    deleted: set[str] = set()
    errors: list[tuple[str, str, str]] = []
    for node in root:
        tag = node.tag.rpartition("}")[2]
        fields = {child.tag.rpartition("}")[2]: child.text or "" for child in node}
        if tag == "Deleted":
            deleted.add(fields.get("Key", ""))
        elif tag == "Error":
            errors.append((fields.get("Key", ""), fields.get("Code", "Unknown"), fields.get("Message", "")))
    return deleted, errors


def _xml_text(pattern: re.Pattern[bytes], body: bytes) -> str:
    m = pattern.search(body)
    return html.unescape(m.group(1).decode("utf-8", "replace")) if m else ""


class LeanPath:
    """Signed S3 requests over per-thread keep-alive connections to one explicit endpoint (thread-safe)."""

    def __init__(
        self,
        endpoint: str,
        signer: SigV4,
        *,
        max_attempts: int,
        connect_timeout: float,
        read_timeout: float,
        verify: bool | str = True,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint}")
        self.scheme = parts.scheme
        self.netloc = parts.netloc
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base = parts.path.rstrip("/")
        self.signer = signer
        self.max_attempts = max(1, max_attempts)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.enabled = True
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            if verify is False:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
            self._ssl = ctx
        self._local = threading.local()
        self._user_agent = f"s3seg/{__version__} lean"

    @classmethod
    def for_client(cls, client: Any) -> LeanPath | None:
        """A lean path signing with ``client``'s own credentials and region, or None when botocore must do it.

        None when: no credentials (anonymous), a signature version other than SigV4, virtual-hosted addressing,
        proxies (configured or in the environment), or a TLS setting this path cannot reproduce.
        """
        meta = client.meta
        config = meta.config
        credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
        if credentials is None or config.signature_version not in (None, "s3v4", "v4"):
            return None
        if (config.s3 or {}).get("addressing_style") != "path" or config.proxies or config.client_cert:
            return None  # client_cert: mutual TLS, which this path does not do (it would present no certificate)
        endpoint = meta.endpoint_url
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        proxies = urllib.request.getproxies()
        if parts.scheme in proxies and not urllib.request.proxy_bypass(parts.hostname):
            return None
        verify: Any = getattr(getattr(getattr(client, "_endpoint", None), "http_session", None), "_verify", True)
        if not isinstance(verify, (bool, str)):
            return None
        retries = config.retries or {}
        attempts = int(retries.get("total_max_attempts") or (retries.get("max_attempts", 2) + 1))
        return cls(
            endpoint,
            SigV4(credentials, meta.region_name or "us-east-1"),
            max_attempts=attempts,
            connect_timeout=float(config.connect_timeout),
            read_timeout=float(config.read_timeout),
            verify=verify,
        )

    def disable(self, reason: str) -> None:
        """Send everything through botocore from now on, in this process (logged once)."""
        if self.enabled:
            self.enabled = False
            log.warning("%s; sending every request through botocore from now on (slower, same results)", reason)

    # -- the S3 calls ------------------------------------------------------------------------------------------
    def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        if_match: str | None,
        if_none_match: bool,
        storage_class: str,
    ) -> str:
        """CopyObject keeping metadata and tags (the same headers botocore sends); returns the new ETag as sent."""
        headers = {
            "x-amz-copy-source": copy_source(src_bucket, src_key),
            "x-amz-metadata-directive": "COPY",
            "x-amz-tagging-directive": "COPY",
        }
        if if_match:
            headers["x-amz-copy-source-if-match"] = if_match
        if if_none_match:
            headers["If-None-Match"] = "*"
        if storage_class and storage_class != "STANDARD":
            headers["x-amz-storage-class"] = storage_class
        path = object_path(self.base, dst_bucket, dst_key)
        r = self._call("CopyObject", dst_bucket, dst_key, "PUT", path, "", headers, copy=True)
        return _xml_text(_ETAG, r.body)

    def head(self, bucket: str, key: str) -> dict[str, str] | None:
        """HeadObject's response headers (lower-cased), or None if the object does not exist."""
        try:
            r = self._call("HeadObject", bucket, key, "HEAD", object_path(self.base, bucket, key), "", {})
        except StorageError as err:
            if err.code == "NoSuchKey":
                return None
            raise
        return r.headers

    def delete(self, bucket: str, key: str, *, if_match: str | None) -> None:
        headers = {"If-Match": if_match} if if_match else {}
        self._call("DeleteObject", bucket, key, "DELETE", object_path(self.base, bucket, key), "", headers)

    def delete_objects(
        self, bucket: str, items: list[tuple[str, str | None]]
    ) -> tuple[set[str], list[tuple[str, str, str]]]:
        """DeleteObjects: (deleted keys, per-key errors). The caller decides what a missing key means."""
        body = delete_body(items)
        headers = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}  # required by the API
        r = self._call(
            "DeleteObjects", bucket, items[0][0], "POST", f"{self.base}/{bucket}", "delete", headers, body=body
        )
        try:
            return parse_delete_result(r.body)
        except ElementTree.ParseError as exc:
            # The batch may have been applied: the caller treats every key as unconfirmed and re-checks.
            raise StorageError(
                "DeleteObjects", bucket, items[0][0], "MalformedResponse", str(exc), retryable=True
            ) from None

    # -- one request, with retries ------------------------------------------------------------------------------
    def _call(
        self,
        op: str,
        bucket: str,
        key: str,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        *,
        body: bytes | None = None,
        copy: bool = False,
    ) -> Response:
        payload = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
        maybe_applied = False
        attempt = 0
        while True:
            attempt += 1
            if not self.enabled:
                raise UseBotocore("lean path turned off", maybe_applied=maybe_applied)
            try:
                try:
                    r = self._send(method, path, query, dict(headers), body, payload)
                except OSError as exc:
                    # Sent or not, applied or not: unknown. Retried like botocore does; the protocol re-checks.
                    name, text = type(exc).__name__, str(exc) or "connection error"
                    raise _Transient(StorageError(op, bucket, key, name, text, retryable=True)) from None
                return self._check(op, bucket, key, r, copy=copy, retried=attempt > 1)
            except _Transient as t:
                maybe_applied = True
                if attempt >= self.max_attempts:
                    t.error.retried = attempt > 1
                    raise t.error from None
            except UseBotocore as why:
                why.maybe_applied = maybe_applied
                raise
            time.sleep(random.random() * min(20.0, 2.0 ** (attempt - 1)))

    def _check(self, op: str, bucket: str, key: str, r: Response, *, copy: bool, retried: bool) -> Response:
        if 200 <= r.status < 300:
            if copy and (b"<Error>" in r.body or b"<ETag>" not in r.body):
                # S3 may answer a CopyObject 200 and report the failure in the body: botocore retries it.
                code = _xml_text(_CODE, r.body) or "InternalError"
                raise _Transient(
                    StorageError(op, bucket, key, code, "error in a 200 answer", status=r.status, retryable=True)
                )
            return r
        code = _xml_text(_CODE, r.body) if r.body else ""
        message = _xml_text(_MESSAGE, r.body) if r.body else ""
        if not code:
            code = {404: "NoSuchKey", 412: "PreconditionFailed"}.get(r.status, str(r.status))
        if 300 <= r.status < 400 or code in _BOTOCORE_CODES:
            raise UseBotocore(f"{op} answered {r.status} {code}", maybe_applied=False)
        if code in _AUTH_CODES:
            raise UseBotocore(f"{op} answered {r.status} {code}", maybe_applied=False, suspect=True)
        if code in _REFUSED_CODES:
            self.disable(f"the store refused a lean {op} request: {code} {message}")
            raise UseBotocore(f"{op} answered {r.status} {code}", maybe_applied=False)
        retryable = code in RETRYABLE_CODES or r.status in _RETRYABLE_STATUS
        err = StorageError(op, bucket, key, code, message, status=r.status, retryable=retryable, retried=retried)
        if retryable:
            raise _Transient(err)
        raise err

    def _send(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes | None, payload: str
    ) -> Response:
        # ``query`` is a bare sub-resource (``delete``): sent as ``?delete``, signed canonically as ``delete=``.
        canonical_query = f"{query}=" if query else ""
        signed = self.signer.sign(method, self.netloc, path, canonical_query, headers, payload, amz_now())
        signed["Host"] = self.netloc
        signed["User-Agent"] = self._user_agent
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = Connection(
                self.host, self.port, self._ssl, connect_timeout=self.connect_timeout, read_timeout=self.read_timeout
            )
        return conn.exchange(method, f"{path}?{query}" if query else path, signed, body)


class ProtocolError(OSError):
    """The server's answer is not HTTP this client understands (handled like a dropped connection)."""


class Connection:
    """One keep-alive HTTP/1.1 connection with just enough HTTP for S3's answers.

    Why not ``http.client``: it parses every response's headers with the ``email`` package, which alone cost
    more client CPU than signing the request. This reads the status line and headers with ``readline`` and the
    body by ``Content-Length`` or chunked encoding (or to the end, for a closing server). Any error closes the
    connection: a half-read connection is never reused.
    """

    def __init__(
        self, host: str, port: int, tls: ssl.SSLContext | None, *, connect_timeout: float, read_timeout: float
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.sock: socket.socket | None = None
        self._reader: Any = None
        self._used = 0.0

    def _open(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.read_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock, self._reader = sock, sock.makefile("rb")

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self.sock is not None:
            self.sock.close()
        self.sock = self._reader = None

    def exchange(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> Response:
        """Send one request and read its whole answer."""
        if self.sock is not None and time.monotonic() - self._used > _IDLE_CHECK_SECONDS and _closed_by_peer(self.sock):
            self.close()  # the server closed this idle keep-alive connection: do not send into it
        try:
            if self.sock is None:
                self._open()
            assert self.sock is not None
            lines = [f"{method} {target} HTTP/1.1\r\n"]
            for name, value in headers.items():
                if "\r" in value or "\n" in value:
                    raise ValueError(f"invalid value for header {name}: {value!r}")
                lines.append(f"{name}: {value}\r\n")
            if body is not None or method in ("PUT", "POST"):
                lines.append(f"Content-Length: {len(body or b'')}\r\n")
            lines.append("\r\n")
            self.sock.sendall("".join(lines).encode("latin-1") + (body or b""))
            status, answer, keep = self._read_head()
            while 100 <= status < 200:  # interim answers (100 Continue): the real one follows
                status, answer, keep = self._read_head()
            data, keep = self._read_body(method, status, answer, keep)
        except BaseException:
            self.close()
            raise
        if not keep:
            self.close()
        self._used = time.monotonic()
        return Response(status, answer, data)

    def _read_head(self) -> tuple[int, dict[str, str], bool]:
        line = self._reader.readline(65537)
        if not line:
            raise ConnectionResetError("the server closed the connection without answering")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP status line: {line[:100]!r}")
        headers: dict[str, str] = {}
        while True:
            h = self._reader.readline(65537)
            if h in (b"\r\n", b"\n"):
                break
            if not h:
                raise ConnectionResetError("the server closed the connection inside the headers")
            name, sep, value = h.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"not an HTTP header line: {h[:100]!r}")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        keep = parts[0] == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
        return int(parts[1]), headers, keep

    def _read_body(self, method: str, status: int, headers: dict[str, str], keep: bool) -> tuple[bytes, bool]:
        if method == "HEAD" or status in (204, 304):
            return b"", keep
        reader = self._reader
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = reader.readline(65537)
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size line: {size_line[:100]!r}") from None
                if size == 0:
                    while reader.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks), keep
                chunk = reader.read(size)
                if len(chunk) != size or reader.read(2) != b"\r\n":
                    raise ConnectionResetError("the server closed the connection inside a chunk")
                chunks.append(chunk)
        length = headers.get("content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                raise ProtocolError(f"bad Content-Length: {length!r}") from None
            data = reader.read(n) if n else b""
            if len(data) != n:
                raise ConnectionResetError(f"the server closed the connection after {len(data)} of {n} bytes")
            return data, keep
        return reader.read(), False  # delimited by the server closing the connection


def _closed_by_peer(sock: socket.socket) -> bool:
    """True if an idle keep-alive socket was closed by the server (readable with no request outstanding)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
