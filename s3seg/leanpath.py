"""A lean request path for the S3 calls a move makes per object (CopyObject, HeadObject, DeleteObject(s)) and
for the listing a plan makes per 1,000 keys (ListObjectsV2).

Why it exists: botocore spends about 1 ms of client CPU on every request doing generic work (event hooks,
model-driven validation, serialisation and parsing, endpoint rules) that moving millions of 1 KiB objects does
not need. On a machine whose cores are shared with the store, that CPU is the throughput. This path sends the
same requests, signed with the same SigV4 credentials, over one keep-alive connection per thread, for a
fifth of the CPU or less (measured in ``scripts/bench.py``; see docs/benchmarks.md).

Scope, deliberately narrow:

* Explicitly configured endpoints with path-style addressing (S3-compatible stores, local servers), over HTTP
  or HTTPS: one route for every bucket (``LeanPath(endpoint, ...)``, ``LeanPath.for_client``).
* AWS itself (no explicit endpoint): per-bucket routes learned from botocore (``BotocoreRoutes``,
  ``LeanPath.for_aws``). For each bucket botocore builds and signs one HeadObject that is captured in
  ``before-send`` and never sent; its URL gives the regional endpoint and addressing (virtual-hosted or path),
  its Authorization the signing region and service, and the request is re-signed here and must come out
  byte-identical, or that bucket stays with botocore. HTTPS only, certificates verified as botocore verifies
  them (its CA bundle, ``verify`` and ``AWS_CA_BUNDLE``), SNI with the virtual host name.
* ListObjectsV2 as ``Storage.list_pages`` asks for it (``encoding-type=url`` always, as botocore adds it; the
  query signed in SigV4's canonical form), parsed with lxml straight into ``Listed`` objects: botocore parses
  each page's XML twice and then walks its model, half of a plan's client CPU. An answer that does not read
  whole is retried, never returned as a short page.
* Only plain requests: SSE-C, multipart copies and everything else go through botocore. So do, per bucket,
  access points and ARNs, aliases, S3 Express directory buckets (``--x-s3``), FIPS, dual-stack and accelerate
  endpoints, and any request botocore builds that this path does not recognise (another host shape, another
  signing service, an extra header such as one a user's hook adds).
* Anything this path does not fully understand is handed back to botocore (``UseBotocore``): redirects and
  region errors (on AWS the bucket's route is then learned again, from botocore after it followed the
  redirect), clock skew, expired tokens, and a refused signature (which also turns this path off for the
  process, with a warning). A 3xx/4xx answer means the request was not applied, so sending it again through
  botocore is safe. A certificate that does not verify is handed back too (botocore, with the same CA bundle,
  gives the verdict).

Retries follow the client's ``retry_mode``: ``standard`` (capped exponential backoff with jitter), ``legacy`` (the
same, uncapped, as botocore's legacy handler) and ``adaptive`` (standard plus client-side rate limiting with
botocore's own token bucket and CUBIC rate adjustment, one limiter per lean path), with the same attempts, for
transport errors, 5xx, throttling, CopyObject's "200 with an error body" and a listing that does not parse.
Errors come out as ``StorageError`` with the same codes botocore's would, and ``retried`` set when an earlier
attempt may have been applied, so the move protocol's "a 412 after a retry may be our own copy" reasoning holds
unchanged. The codes it retries and hands back are in ``s3errors``, with how its retries sit between botocore's
and the move protocol's.

Must not: decide what a result means for a move (``moves``), or be used by anything but ``storage``. The
private botocore attributes it reads are pinned by ``tests/unit/test_leanpath_contract.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import os
import random
import re
import select
import socket
import ssl
import threading
import time
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar, Unpack
from urllib.parse import quote, unquote_plus, urlsplit

import botocore.exceptions
import botocore.utils
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.httpsession import get_cert_path
from botocore.retries import adaptive, throttling
from botocore.retries import bucket as retry_bucket
from lxml import etree

from s3seg import __version__
from s3seg.errors import StorageError
from s3seg.objects import CopyConditions, Listed, ListPage, quoted
from s3seg.s3errors import (
    AUTH_SUSPECT_CODES,
    BOTOCORE_RECOVERS,
    REGION_CODES,
    RETRYABLE_CODES,
    RETRYABLE_STATUS,
    SIGNING_REFUSED_CODES,
    THROTTLE_CODES,
    THROTTLE_STATUS,
    THROTTLING_CODES,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_PACED_BACKOFF = 0.1  # seconds: the most a paced retry of a throttled request sleeps before its pacer slot
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_SAFE = "-_.~/"  # botocore's percent_encode safe set for keys and copy sources
_QUERY_SAFE = "-_.~"  # RFC 3986 unreserved: botocore's (and SigV4's) encoding of query names and values
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


class Transient(Exception):
    """An attempt failed in a way a retry may cure; ``error`` is what to raise when attempts run out."""

    def __init__(self, error: StorageError) -> None:
        super().__init__(str(error))
        self.error = error


# (the header each signed name is read from, None for host; the signed names, sorted; ``;``-joined)
_Shape = tuple[list[str | None], list[str], str]


class SigV4:
    """AWS Signature Version 4 for S3 requests (header auth), with the day's signing key cached."""

    def __init__(self, credentials: Any, region: str, service: str = "s3") -> None:
        self._credentials = credentials  # botocore Credentials: refreshable ones refresh themselves
        self.region = region
        self.service = service
        self._keys: dict[tuple[str, str], Any] = {}
        self._shapes: dict[tuple[str, ...], _Shape] = {}

    def _signing_hmac(self, secret: str, day: str) -> Any:
        """An HMAC-SHA256 keyed with the day's signing key, to ``copy()`` per request (the key is set up once)."""
        found = self._keys.get((secret, day))
        if found is None:
            key = hmac.new(("AWS4" + secret).encode(), day.encode(), hashlib.sha256).digest()
            for part in (self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            found = hmac.new(key, digestmod=hashlib.sha256)
            self._keys = {(secret, day): found}  # one live key: credentials rotate, days pass
        return found

    def _shape(self, names: tuple[str, ...]) -> _Shape:
        """The signed headers for a request carrying ``names`` (in that order), worked out once per set of names:
        (the header each signed name takes its value from, None for host; the lower-cased names, sorted; their
        ``;``-joined list). A name given twice in different cases is signed once, with its last value."""
        source: dict[str, str | None] = {"host": None}
        for name in names:
            source[name.lower()] = name
        lowered = sorted(source)
        shape = ([source[n] for n in lowered], lowered, ";".join(lowered))
        if len(self._shapes) >= 64:  # a few kinds of request per run; never grows without bound
            self._shapes.clear()
        self._shapes[names] = shape
        return shape

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
        names_sent = tuple(headers)
        shape = self._shapes.get(names_sent) or self._shape(names_sent)
        originals, names, signed = shape
        lines = []
        for name, original in zip(names, originals, strict=True):
            value = host if original is None else headers[original]
            # SigV4 trims and collapses whitespace (botocore: " ".join(value.split())); a value with no space and
            # nothing but printable characters has no whitespace of any kind (the usual case): kept as is.
            if " " in value or not value.isprintable():
                value = " ".join(value.split())
            lines.append(f"{name}:{value}\n")
        request = "\n".join((method, path, query, "".join(lines), signed, payload_sha256))
        day = amz_date[:8]
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
        mac = self._signing_hmac(creds.secret_key, day).copy()
        mac.update(to_sign.encode())
        signature = mac.hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
        return headers


# The characters ``quote(text, safe=_SAFE)`` leaves as they are: a text made only of these is its own encoding.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~/-]*")


def _encoded(text: str) -> str:
    """``quote(text, safe=_SAFE)``, without its per-character Python loop for the usual plain key."""
    return text if _UNRESERVED.fullmatch(text) else quote(text, safe=_SAFE)


_now: tuple[int, str] = (0, "")  # (second, its x-amz-date): one strftime per second, not per request


def amz_now() -> str:
    global _now
    second = int(time.time())
    if _now[0] != second:
        _now = (second, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second)))  # one atomic rebinding
    return _now[1]


def object_path(prefix: str, key: str) -> str:
    """The request path of an object under a route's ``prefix``, the key encoded exactly as botocore encodes it."""
    return f"{prefix}/{_encoded(key)}"


# The header botocore sends for each of ``copy_params``' parameters.
_COPY_HEADERS = {
    "MetadataDirective": "x-amz-metadata-directive",
    "TaggingDirective": "x-amz-tagging-directive",
    "CopySourceIfMatch": "x-amz-copy-source-if-match",
    "IfNoneMatch": "If-None-Match",
    "StorageClass": "x-amz-storage-class",
}


def copy_params(conditions: CopyConditions) -> dict[str, str]:
    """CopyObject's parameters (botocore's names) beside the source and destination, for both request paths:
    keep metadata and tags, the conditions asked for, and the storage class unless it is the default."""
    params = {"MetadataDirective": "COPY", "TaggingDirective": "COPY"}
    if_match, storage_class = conditions["if_match"], conditions["storage_class"]
    if if_match:
        params["CopySourceIfMatch"] = if_match
    if conditions["if_none_match"]:
        params["IfNoneMatch"] = "*"
    if storage_class and storage_class != "STANDARD":
        params["StorageClass"] = storage_class
    return params


def copy_source(bucket: str, key: str) -> str:
    """The x-amz-copy-source value botocore sends for ``CopySource={"Bucket": bucket, "Key": key}``."""
    return _encoded(f"{bucket}/{key}")


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


def parse_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser with a fast path for the ISO 8601 form of S3's XML bodies.

    botocore hands every ``LastModified`` to dateutil, which costs about 7% of the client CPU of a CopyObject
    (and more per key in a listing). ``fromisoformat`` reads ``2024-01-01T00:00:00.000Z`` to the same aware
    datetime; anything else (naive times, RFC 1123 headers, epochs) goes to botocore's parser as before. Both
    request paths use it (``storage.make_client`` installs it in botocore), so a listing reads alike on both.
    """
    if isinstance(value, str) and len(value) >= 20 and value[10:11] == "T":
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    result: datetime = botocore.utils.parse_timestamp(value)
    return result


@lru_cache(maxsize=4096)
def _listed_time(text: str) -> str:
    """A listing's LastModified as ``Listed`` carries it: the isoformat of the datetime botocore's path parses.
    Cached: the objects of a page are mostly written in the same few seconds."""
    return parse_timestamp(text).isoformat()


def canonical_query(query: str) -> str:
    """SigV4's canonical form of a query string already RFC 3986-encoded (as ``list_query`` encodes it): every
    parameter with a value (the sub-resource ``delete`` is ``delete=``), sorted by name, then value."""
    if not query:
        return ""
    pairs = sorted(p.partition("=")[::2] for p in query.split("&"))
    return "&".join(f"{name}={value}" for name, value in pairs)


def list_query(prefix: str, *, delimiter: str, max_keys: int, start_after: str, continuation_token: str) -> str:
    """ListObjectsV2's query string, with the parameters botocore sends for ``Storage.list_pages``' arguments
    (``prefix`` always, even empty; ``encoding-type=url`` always, as botocore adds it), in canonical order."""
    params = {"list-type": "2", "prefix": prefix, "max-keys": str(max_keys), "encoding-type": "url"}
    if delimiter:
        params["delimiter"] = delimiter
    if start_after:
        params["start-after"] = start_after
    if continuation_token:
        params["continuation-token"] = continuation_token
    return canonical_query("&".join(f"{n}={quote(v, safe=_QUERY_SAFE)}" for n, v in params.items()))


class MalformedListing(ValueError):
    """A ListObjectsV2 answer that cannot be read whole: never taken as a (short) page."""


# Hardened as S3-FACTS asks (no network, no DTD, no entity expansion; a DOCTYPE is refused below, since an
# unexpanded entity would read as a silently shortened key). Comments and processing instructions are dropped
# so the text around them joins up, as botocore's ElementTree parser reads it. One parser per thread: lxml
# parsers are not to be shared between threads.
_LIST_PARSERS = threading.local()
_LOCAL_NAMES: dict[str, str] = {}  # "{namespace}Key" -> "Key": element names, whatever the namespace


def _list_parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_LIST_PARSERS, "parser", None)
    if parser is None:
        parser = _LIST_PARSERS.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True, remove_pis=True
        )
    return parser


def _local(tag: Any) -> str:
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        if not isinstance(tag, str):
            raise MalformedListing(f"unexpected XML node {tag!r}")  # an entity reference left unexpanded
        name = tag.rpartition("}")[2]
        if len(_LOCAL_NAMES) < 256:
            _LOCAL_NAMES[tag] = name
    return name


def parse_list_result(body: bytes) -> ListPage:
    """A ListObjectsV2 answer as ``Storage.list_pages`` yields it from botocore's parse, namespace-agnostic.

    Per object: Key (URL-decoded as botocore decodes it, ``unquote_plus``, when the answer says ``EncodingType``
    url: ``list_query`` always asks for it), Size, ETag (quoted), StorageClass (STANDARD when
    absent) and LastModified (``_listed_time``). CommonPrefixes are dropped. ``MalformedListing`` for anything
    that is not a whole answer: bad XML, another root element, a DOCTYPE, an object without Key, Size, ETag or
    LastModified, or one that does not parse.
    """
    try:
        root = etree.fromstring(body, _list_parser())
    except etree.XMLSyntaxError as exc:
        raise MalformedListing(f"not XML: {exc}") from None
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lack DocInfo.doctype
    if docinfo.doctype:
        raise MalformedListing("a DOCTYPE in a listing")
    if _local(root.tag) != "ListBucketResult":
        raise MalformedListing(f"<{_local(root.tag)}> where <ListBucketResult> was expected")
    # A hot loop (a plan reads every key of a prefix through it): element names looked up in ``_LOCAL_NAMES``
    # inline, and the fields of an object kept in locals rather than a dict per object.
    names = _LOCAL_NAMES
    rows: list[tuple[str, str, str, str, str]] = []
    top: dict[str, str] = {}
    for node in root:
        name = names.get(node.tag) or _local(node.tag)
        if name != "Contents":
            top[name] = node.text or ""
            continue
        key = size = etag = modified = None
        storage_class = "STANDARD"
        for child in node:
            field = names.get(child.tag) or _local(child.tag)
            if field == "Key":
                key = child.text or ""
            elif field == "Size":
                size = child.text or ""
            elif field == "ETag":
                etag = child.text or ""
            elif field == "LastModified":
                modified = child.text or ""
            elif field == "StorageClass":
                storage_class = child.text or ""
        if key is None or size is None or etag is None or modified is None:
            missing = [
                n for n, v in (("Key", key), ("Size", size), ("ETag", etag), ("LastModified", modified)) if v is None
            ]
            raise MalformedListing(f"an object without {', '.join(missing)}")
        rows.append((key, size, etag, storage_class, modified))
    decode = top.get("EncodingType") == "url"  # botocore's test, exactly (a store may ignore encoding-type)
    try:
        objects = [
            Listed(
                # unquote_plus leaves a key without "%" or "+" as it is: skip the call for those
                key=unquote_plus(key) if decode and ("%" in key or "+" in key) else key,
                size=int(size),
                etag=quoted(etag),
                storage_class=storage_class,
                last_modified=_listed_time(modified),
            )
            for key, size, etag, storage_class, modified in rows
        ]
    except (ValueError, OverflowError) as exc:
        raise MalformedListing(f"an object that does not parse: {exc}") from None
    # botocore reads a boolean as true only when it is exactly "true"
    return ListPage(
        objects=objects, truncated=top.get("IsTruncated") == "true", next_token=top.get("NextContinuationToken", "")
    )


def _xml_text(pattern: re.Pattern[bytes], body: bytes) -> str:
    m = pattern.search(body)
    if m is None:
        return ""
    text = m.group(1).decode("utf-8", "replace")
    if "&" not in text:
        return text
    quoted_only = text.replace("&quot;", '"')  # an ETag's quotes, the usual and only entity in one
    return quoted_only if "&" not in quoted_only else html.unescape(text)


@dataclass(frozen=True, slots=True)
class Route:
    """Where one bucket's requests go and how they are signed.

    ``host``/``port``: what to connect to, and the name the certificate must carry (SNI). ``netloc``: the Host
    header (signed). ``prefix``: the path before ``/<key>`` ("" virtual-hosted, ``/<bucket>`` path-style, after
    any base path). ``bucket_path``: the bucket's own path (DeleteObjects): ``/`` or ``/<bucket>``.
    """

    host: str
    port: int
    netloc: str
    prefix: str
    bucket_path: str
    signer: SigV4


# Bucket names botocore treats as something else than a general-purpose bucket on the regional endpoint:
# ARNs (access points, Outposts, Object Lambda), S3 Express directory buckets, access point / Object Lambda
# aliases, S3 Tables. None of them is ever sent the lean way.
_SPECIAL_BUCKET = re.compile(r"[:/]|--x-s3$|-s3alias$|--ol-s3$|--op-s3$|--table-s3$")
# The plain regional S3 endpoints (commercial, GovCloud, China): s3.<region>.amazonaws.com, and the global
# s3.amazonaws.com (us-east-1). Not s3-fips, s3.dualstack, s3-accelerate, s3-accesspoint, s3express, ...
_AWS_S3_HOST = re.compile(r"s3(?:\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+))?\.amazonaws\.com(?:\.cn)?")
_SIGV4_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=[^/]+/\d{8}/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/aws4_request, "
    r"SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}"
)
# What botocore may send on a plain HeadObject besides what this path sends itself (unsigned SDK telemetry).
_PROBE_HEADERS = frozenset(
    {"authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "user-agent", "host"}
)
_PROBE_KEY = ".s3seg-lean-probe"  # never sent: the probe request is captured in before-send
_PROBING = threading.local()  # set while this thread asks botocore to build a probe request


_PROBE_MARK = "x-s3seg-lean-probe"  # on the answer _capture gives, so _probe knows no other hook answered


class _Empty:
    def stream(self, **_: Any) -> Any:
        yield b""


def _capture(request: Any, **_: Any) -> Any:
    """before-send: keep the probe request botocore built and signed, and answer it here (nothing is sent).

    botocore calls every before-send handler and uses the first answer; this one is registered last, so an
    earlier handler's answer (moto's in-process mock, a user's stub) wins, and ``_probe`` sees it did.
    """
    if getattr(_PROBING, "active", False):
        _PROBING.request = request
        headers = HTTPHeaders()
        headers[_PROBE_MARK], headers["Content-Length"] = "1", "0"
        return AWSResponse(request.url, 200, headers, _Empty())
    return None


def plain_bucket(bucket: str) -> bool:
    """True for a general-purpose bucket name (not an ARN, alias or directory bucket)."""
    return bool(bucket) and _SPECIAL_BUCKET.search(bucket) is None


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def route_from_request(request: Any, bucket: str, credentials: Any) -> tuple[Route | None, str]:
    """The route a captured botocore HeadObject of ``_PROBE_KEY`` in ``bucket`` shows, or (None, why not).

    Recognised only: HTTPS to a plain regional S3 endpoint, the bucket in the host (virtual-hosted) or first in
    the path (path-style), SigV4 for service ``s3`` in the region the host names, no header this path would
    not send, and a signature this path reproduces exactly.
    """
    parts = urlsplit(request.url)
    host = parts.hostname or ""
    key_path = "/" + quote(_PROBE_KEY, safe=_SAFE)
    if request.method != "HEAD" or parts.scheme != "https" or parts.query or parts.fragment or not host:
        return None, f"botocore builds another kind of request ({request.method} {parts.scheme}://{host})"
    if parts.path == key_path and host.startswith(bucket + "."):
        prefix, bucket_path, service_host = "", "/", host[len(bucket) + 1 :]
    elif parts.path == f"/{bucket}{key_path}":
        prefix, bucket_path, service_host = f"/{bucket}", f"/{bucket}", host
    else:
        return None, f"unrecognised addressing: {host} {parts.path}"
    shape = _AWS_S3_HOST.fullmatch(service_host)
    if shape is None:
        return None, f"{service_host} is not a plain regional S3 endpoint (FIPS, dual-stack, accelerate, ...)"
    headers = {name.lower(): _text(value) for name, value in request.headers.items()}
    extra = sorted(n for n in headers if n not in _PROBE_HEADERS and not n.startswith("amz-sdk-"))
    if extra:
        return None, f"botocore adds headers this path does not send: {', '.join(extra)}"
    auth = _SIGV4_AUTH.fullmatch(headers.get("authorization", ""))
    if auth is None:
        return None, "not signed with SigV4"
    region, service = auth["region"], auth["service"]
    if service != "s3" or (shape["region"] or "us-east-1") != region:
        return None, f"signed for {service} in {region} at {host}"
    signer = SigV4(credentials, region, service)
    netloc = parts.netloc
    ours = signer.sign(
        "HEAD", netloc, parts.path, "", {}, headers.get("x-amz-content-sha256", ""), headers.get("x-amz-date", "")
    )
    if ours["Authorization"] != headers["authorization"]:
        return None, "signature mismatch"
    route = Route(host, parts.port or 443, netloc, prefix, bucket_path, signer)
    return route, ""


class BotocoreRoutes:
    """Per-bucket routes on AWS, learned from botocore itself (thread-safe; one probe per bucket).

    The probe is a HeadObject that botocore resolves (endpoint rules, the region redirector's cache of bucket
    regions), builds and signs as usual; a ``before-send`` hook registered after every other one keeps it and
    answers it, so nothing is sent. If another hook answers it first, the bucket stays with botocore.
    Why not call the endpoint ruleset resolver directly: this sees everything botocore would do, hooks and the
    region cache included, and the signature check proves this path signs alike.
    """

    def __init__(self, client: Any, credentials: Any) -> None:
        self._client = client
        self._credentials = credentials
        self._routes: dict[str, Route | None] = {}
        self._stale: dict[str, tuple[tuple[str, str], ...]] = {}  # routes the store redirected away from
        self._lock = threading.Lock()
        # After all other before-send handlers: one that answers requests itself (moto's in-process mock, a
        # user's stub) answers the probe first, and then the bucket stays with botocore (never sent around it).
        client.meta.events.register("before-send", _capture, unique_id="s3seg-lean-capture")

    def route(self, bucket: str) -> Route | None:
        try:
            return self._routes[bucket]
        except KeyError:
            pass
        with self._lock:
            if bucket not in self._routes:
                route, why = self._learn(bucket)
                if route is None:
                    log.info("s3://%s: every request through botocore (%s)", bucket, why)
                self._routes[bucket] = route
            return self._routes[bucket]

    def forget(self, bucket: str, route: Route) -> None:
        """The store redirected or refused ``route``: learn it again (botocore follows the redirect first)."""
        with self._lock:
            if self._routes.get(bucket) is route:
                del self._routes[bucket]
                where = (route.netloc, route.signer.region)
                self._stale[bucket] = (*self._stale.get(bucket, ()), where)

    def _learn(self, bucket: str) -> tuple[Route | None, str]:
        if not plain_bucket(bucket):
            return None, "an ARN, access point alias or directory bucket"
        route, why = None, ""
        for _ in range(2):  # a second time only if credentials rotated between botocore's signature and ours
            request = self._probe(bucket)
            if request is None:
                return None, "botocore did not build a request to capture"
            route, why = route_from_request(request, bucket, self._credentials)
            if why != "signature mismatch":
                break
        # Redirected twice from the route botocore still resolves: botocore alone knows where this bucket is.
        # (Once is not enough: another thread may have re-learned it before botocore had followed the redirect.)
        if route is not None and self._stale.get(bucket, ()).count((route.netloc, route.signer.region)) >= 2:
            return None, "redirected, and botocore still resolves the same endpoint"
        return route, why

    def _probe(self, bucket: str) -> Any:
        _PROBING.active, _PROBING.request = True, None
        try:
            answer = self._client.head_object(Bucket=bucket, Key=_PROBE_KEY)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            # Another hook's answer (an error), or a bucket name botocore rejects: botocore keeps the bucket.
            log.debug("no lean route for s3://%s: %s", bucket, exc)
            return None
        finally:
            _PROBING.active = False
        if answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get(_PROBE_MARK) != "1":
            return None  # another hook answered: requests on this client do not go over the network as usual
        return _PROBING.request


class _ThrottlingDetector:
    """What botocore's adaptive limiter asks: was this answer throttling? (botocore's own list of codes)."""

    def is_throttling_error(self, code: str = "", status: int = 0, **_: Any) -> bool:
        return code in THROTTLING_CODES or (status == 429 and not code)


def rate_limiter() -> Any:
    """botocore's adaptive-mode client rate limiter (token bucket + CUBIC), fed by this path's answers."""
    clock = retry_bucket.Clock()
    return adaptive.ClientRateLimiter(
        rate_adjustor=throttling.CubicCalculator(starting_max_rate=0, start_time=clock.current_time()),
        rate_clocker=adaptive.RateClocker(clock),
        token_bucket=retry_bucket.TokenBucket(max_rate=1, clock=clock),
        throttling_detector=_ThrottlingDetector(),
        clock=clock,
    )


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """The TLS settings botocore was given: its CA bundle (certifi's, ``AWS_CA_BUNDLE`` or ``verify=path``), or
    no verification at all when botocore was told ``verify=False`` (the same choice, not a stricter one)."""
    if verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    where = get_cert_path(verify)  # type: ignore[arg-type]  # True or a path, as botocore passes it
    if where and os.path.isdir(where):
        return ssl.create_default_context(capath=where)
    return ssl.create_default_context(cafile=where or None)


def _retry_settings(config: Any) -> tuple[str, int] | None:
    retries = config.retries or {}
    mode = str(retries.get("mode") or "standard")
    if mode not in ("standard", "legacy", "adaptive"):
        return None
    default = 5 if mode == "legacy" else 3  # botocore's defaults (legacy: 4 retries; standard: 3 attempts)
    if retries.get("total_max_attempts") is not None:
        return mode, int(retries["total_max_attempts"])
    if retries.get("max_attempts") is not None:
        return mode, int(retries["max_attempts"]) + 1
    return mode, default


def _client_settings(client: Any) -> tuple[Any, dict[str, Any]] | None:
    """(credentials, LeanPath keyword arguments) for what every lean path needs from a client, or None."""
    meta = client.meta
    config = meta.config
    credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
    if credentials is None or config.signature_version not in (None, "s3v4", "v4"):
        return None
    if config.proxies or config.client_cert:
        return None  # client_cert: mutual TLS, which this path does not do (it would present no certificate)
    verify: Any = getattr(getattr(getattr(client, "_endpoint", None), "http_session", None), "_verify", True)
    retry = _retry_settings(config)
    if not isinstance(verify, (bool, str)) or retry is None:
        return None
    mode, attempts = retry
    return credentials, {
        "max_attempts": attempts,
        "connect_timeout": float(config.connect_timeout),
        "read_timeout": float(config.read_timeout),
        "verify": verify,
        "retry_mode": mode,
    }


def _proxied(scheme: str, host: str) -> bool:
    proxies = urllib.request.getproxies()
    return scheme in proxies and not urllib.request.proxy_bypass(host)


class LeanPath:
    """Signed S3 requests over per-thread keep-alive connections (thread-safe).

    Two ways to route: one explicit endpoint, path-style, for every bucket (``endpoint``); or per-bucket routes
    learned from botocore on AWS (``routes``).
    """

    def __init__(
        self,
        endpoint: str | None,
        signer: SigV4 | None,
        *,
        max_attempts: int,
        connect_timeout: float,
        read_timeout: float,
        verify: bool | str = True,
        retry_mode: str = "standard",
        routes: BotocoreRoutes | None = None,
    ) -> None:
        parts = urlsplit(endpoint or "https://aws.invalid")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint}")
        if routes is None and (endpoint is None or signer is None):
            raise ValueError("an endpoint and a signer, or per-bucket routes")
        self.scheme = parts.scheme
        self.netloc = parts.netloc
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base = parts.path.rstrip("/")
        self.signer = signer  # the one signer of an explicit endpoint (per-bucket routes carry their own)
        self.routes = routes
        self._path_routes: dict[str, Route] = {}  # an explicit endpoint's route per bucket (a dict set is atomic)
        self.max_attempts = max(1, max_attempts)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry_mode = retry_mode
        self.max_backoff = float("inf") if retry_mode == "legacy" else 20.0
        self.limiter: Any = rate_limiter() if retry_mode == "adaptive" else None
        self.enabled = True
        # Called on every throttling answer (429/503/SlowDown), retried here or not: the worker's adaptive
        # concurrency limit backs off on it (``worker._observe_throttling``).
        self.on_throttle: Callable[[], None] | None = None
        # Called before each retry of a request (the first send passed the worker's gate): a retry after a
        # throttling answer waits for the worker's pacer like a new request (``concurrency.ThrottlePacer``).
        self.before_retry: Callable[[], None] | None = None
        self._ssl: ssl.SSLContext | None = tls_context(verify) if parts.scheme == "https" else None
        if self._ssl is not None and verify is False:
            log.warning("TLS certificates are not verified on the lean path either (botocore was told verify=False)")
        self._local = threading.local()
        self._user_agent = f"s3seg/{__version__} lean"

    @classmethod
    def for_client(cls, client: Any) -> LeanPath | None:
        """A lean path to ``client``'s explicit endpoint, with its credentials and region, or None.

        None when: no credentials (anonymous), a signature version other than SigV4, virtual-hosted addressing,
        proxies (configured or in the environment), mutual TLS, an unknown retry mode, or a TLS setting this
        path cannot reproduce.
        """
        settings = _client_settings(client)
        if settings is None or (client.meta.config.s3 or {}).get("addressing_style") != "path":
            return None
        credentials, kwargs = settings
        endpoint = client.meta.endpoint_url
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname or _proxied(parts.scheme, parts.hostname):
            return None
        return cls(endpoint, SigV4(credentials, client.meta.region_name or "us-east-1"), **kwargs)

    @classmethod
    def for_aws(cls, client: Any) -> LeanPath | None:
        """A lean path with per-bucket routes to AWS's regional endpoints, or None when botocore must do it all.

        None for everything ``for_client`` refuses, for FIPS, dual-stack and accelerate endpoints, for an
        HTTPS proxy in the environment, and for an endpoint that is not AWS's own (one set in a config file).
        Each bucket is then checked on its own (``BotocoreRoutes``).
        """
        settings = _client_settings(client)
        if settings is None:
            return None
        config = client.meta.config
        s3 = config.s3 or {}
        if config.use_fips_endpoint or config.use_dualstack_endpoint or s3.get("use_accelerate_endpoint"):
            return None
        if s3.get("use_dualstack_endpoint"):
            return None
        parts = urlsplit(client.meta.endpoint_url)
        if parts.scheme != "https" or _AWS_S3_HOST.fullmatch(parts.hostname or "") is None:
            return None
        if _proxied("https", f"s3.{client.meta.region_name}.amazonaws.com"):
            return None
        credentials, kwargs = settings
        return cls(None, None, routes=BotocoreRoutes(client, credentials), **kwargs)

    @property
    def tls(self) -> ssl.SSLContext | None:
        """The TLS context of an https endpoint (certificate verification as botocore was told), else None."""
        return self._ssl

    def disable(self, reason: str) -> None:
        """Send everything through botocore from now on, in this process (logged once)."""
        if self.enabled:
            self.enabled = False
            log.warning("%s; sending every request through botocore from now on (slower, same results)", reason)

    def route(self, bucket: str) -> Route:
        """Where ``bucket``'s requests go; ``UseBotocore`` if botocore must send them."""
        if self.routes is None:
            found = self._path_routes.get(bucket)
            if found is None:
                assert self.signer is not None
                prefix = f"{self.base}/{bucket}"
                found = Route(self.host, self.port, self.netloc, prefix, prefix, self.signer)
                if len(self._path_routes) >= 1024:  # a run names a few buckets; a long-lived caller many
                    self._path_routes.clear()
                self._path_routes[bucket] = found
            return found
        route = self.routes.route(bucket)
        if route is None:
            raise UseBotocore(f"s3://{bucket} is not for the lean path", maybe_applied=False)
        return route

    def close(self) -> None:
        """Close the calling thread's connections."""
        conns: dict[tuple[str, int], Connection] = getattr(self._local, "conns", {})
        for conn in conns.values():
            conn.close()
        conns.clear()

    # -- the S3 calls ------------------------------------------------------------------------------------------
    def copy(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, **conditions: Unpack[CopyConditions]
    ) -> str:
        """CopyObject keeping metadata and tags (the same headers botocore sends); returns the new ETag as sent."""
        route, path, headers = self.copy_request(src_bucket, src_key, dst_bucket, dst_key, conditions)
        r = self._call(route, "CopyObject", dst_bucket, dst_key, "PUT", path, "", headers, copy=True)
        return copy_etag(r)

    def copy_request(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, conditions: CopyConditions
    ) -> tuple[Route, str, dict[str, str]]:
        """(route, path, unsigned headers) of the CopyObject ``copy`` sends: ``copyloop`` sends the same one."""
        if self.routes is not None and not plain_bucket(src_bucket):
            raise UseBotocore(f"copy source s3://{src_bucket} is not for the lean path", maybe_applied=False)
        route = self.route(dst_bucket)
        headers = {"x-amz-copy-source": copy_source(src_bucket, src_key)}
        for name, value in copy_params(conditions).items():
            headers[_COPY_HEADERS[name]] = value
        return route, object_path(route.prefix, dst_key), headers

    def head(self, bucket: str, key: str) -> dict[str, str] | None:
        """HeadObject's response headers (lower-cased), or None if the object does not exist."""
        route = self.route(bucket)
        path = object_path(route.prefix, key)
        try:
            r = self._call(route, "HeadObject", bucket, key, "HEAD", path, "", {})
        except StorageError as err:
            if err.code == "NoSuchKey":
                return None
            raise
        return r.headers

    def delete(self, bucket: str, key: str, *, if_match: str | None) -> None:
        route = self.route(bucket)
        headers = {"If-Match": if_match} if if_match else {}
        path = object_path(route.prefix, key)
        self._call(route, "DeleteObject", bucket, key, "DELETE", path, "", headers)

    def delete_objects(
        self, bucket: str, items: list[tuple[str, str | None]]
    ) -> tuple[set[str], list[tuple[str, str, str]]]:
        """DeleteObjects: (deleted keys, per-key errors). The caller decides what a missing key means."""
        route = self.route(bucket)
        body = delete_body(items)
        headers = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}  # required by the API
        r = self._call(
            route, "DeleteObjects", bucket, items[0][0], "POST", route.bucket_path, "delete", headers, body=body
        )
        try:
            return parse_delete_result(r.body)
        except ElementTree.ParseError as exc:
            # The batch may have been applied: the caller treats every key as unconfirmed and re-checks.
            raise StorageError(
                "DeleteObjects", bucket, items[0][0], "MalformedResponse", str(exc), retryable=True
            ) from None

    def list_objects_v2(
        self,
        bucket: str,
        prefix: str,
        *,
        delimiter: str = "",
        max_keys: int = 1000,
        start_after: str = "",
        continuation_token: str = "",
    ) -> ListPage:
        """One ListObjectsV2 page, the request botocore sends for the same arguments (``list_query``).

        An answer that does not read whole (``MalformedListing``) is retried like a 5xx, and is never a page: a
        short page would silently drop keys from a plan or a verification.
        """
        route = self.route(bucket)
        query = list_query(
            prefix,
            delimiter=delimiter,
            max_keys=max_keys,
            start_after=start_after,
            continuation_token=continuation_token,
        )
        return self._call_parsed(
            route, "ListObjectsV2", bucket, prefix, "GET", route.bucket_path, query, {},
            parse=lambda r: parse_list_result(r.body),
        )  # fmt: skip

    # -- one request, with retries ------------------------------------------------------------------------------
    def _call(
        self,
        route: Route,
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
        return self._call_parsed(
            route, op, bucket, key, method, path, query, headers, body=body, copy=copy, parse=_as_is
        )  # fmt: skip

    def _call_parsed(
        self,
        route: Route,
        op: str,
        bucket: str,
        key: str,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        *,
        parse: Callable[[Response], T],
        body: bytes | None = None,
        copy: bool = False,
    ) -> T:
        """Send with retries; ``parse`` reads a 2xx answer, and a ``MalformedListing`` it raises is retried
        (only for requests that apply nothing: a GET)."""
        payload = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
        maybe_applied = False
        attempt = 0
        while True:
            attempt += 1
            if not self.enabled:
                raise UseBotocore("lean path turned off", maybe_applied=maybe_applied)
            try:
                try:
                    r = self._send(route, method, path, query, dict(headers), body, payload)
                except ssl.SSLCertVerificationError as exc:
                    # Never accepted here; botocore, with the same CA bundle, gives the verdict (and if it
                    # succeeds, this path is turned off: it verified differently).
                    raise UseBotocore(f"{op}: {exc}", maybe_applied=maybe_applied, suspect=True) from None
                except OSError as exc:
                    # Sent or not, applied or not: unknown. Retried like botocore does; the protocol re-checks.
                    self._observe(None)
                    name, text = type(exc).__name__, str(exc) or "connection error"
                    raise Transient(StorageError(op, bucket, key, name, text, retryable=True)) from None
                self._observe(r)
                r = self.check(route, op, bucket, key, r, copy=copy, retried=attempt > 1)
                try:
                    return parse(r)
                except MalformedListing as exc:
                    error = StorageError(
                        op, bucket, key, "MalformedResponse", str(exc), status=r.status, retryable=True
                    )
                    raise Transient(error) from None
            except Transient as t:
                maybe_applied = True
                throttled = t.error.status in (429, 503) or t.error.code in THROTTLING_CODES
                if attempt >= self.max_attempts:
                    t.error.retried = attempt > 1
                    raise t.error from None
            except UseBotocore as why:
                why.maybe_applied = maybe_applied
                raise
            backoff = min(self.max_backoff, 2.0 ** (attempt - 1))
            if throttled and self.before_retry is not None:
                # The pacer spaces this retry (and has just cut the rate): a second of back-off on top would only
                # idle the thread, and a throttled DeleteObjects would hold up its whole batch (measured: 76% of
                # a throttling store's limit reached with the full back-off).
                backoff = min(backoff, _PACED_BACKOFF)
            time.sleep(random.random() * backoff)
            if self.before_retry is not None:
                self.before_retry()

    def _observe(self, r: Response | None) -> None:
        """Feed the adaptive rate limiter (retry_mode=adaptive), as botocore's needs-retry hook feeds its own."""
        if self.limiter is not None:
            code = _xml_text(_CODE, r.body) if r is not None and r.status >= 300 and r.body else ""
            self.limiter.on_receiving_response(code=code, status=0 if r is None else r.status)

    def check(
        self, route: Route, op: str, bucket: str, key: str, r: Response, *, copy: bool, retried: bool
    ) -> Response:
        """``r`` if it is a success; else raises what it means: ``UseBotocore`` (botocore must send it),
        ``Transient`` (retry it) or ``StorageError`` (the store's definite answer)."""
        if 200 <= r.status < 300:
            if copy and (b"<Error>" in r.body or b"<ETag>" not in r.body):
                # S3 may answer a CopyObject 200 and report the failure in the body: botocore retries it.
                code = _xml_text(_CODE, r.body) or "InternalError"
                raise Transient(
                    StorageError(op, bucket, key, code, "error in a 200 answer", status=r.status, retryable=True)
                )
            return r
        code = _xml_text(_CODE, r.body) if r.body else ""
        message = _xml_text(_MESSAGE, r.body) if r.body else ""
        if not code:
            code = {404: "NoSuchKey", 412: "PreconditionFailed"}.get(r.status, str(r.status))
        # On AWS, a region hint other than the one signed for means the bucket lives elsewhere. (Not for explicit
        # endpoints: some stores name a region of their own on every answer.)
        hint = r.headers.get("x-amz-bucket-region") if self.routes is not None else None
        elsewhere = 300 <= r.status < 400 or code in REGION_CODES or (hint is not None and hint != route.signer.region)
        if elsewhere or code in BOTOCORE_RECOVERS:
            if elsewhere and self.routes is not None:
                self.routes.forget(bucket, route)  # botocore follows the redirect; the route is learned again
            raise UseBotocore(f"{op} answered {r.status} {code}", maybe_applied=False)
        suspect = code in AUTH_SUSPECT_CODES
        if suspect or (r.status == 400 and not r.body):
            raise UseBotocore(f"{op} answered {r.status} {code}", maybe_applied=False, suspect=suspect)
        if code in SIGNING_REFUSED_CODES:
            self.disable(f"the store refused a lean {op} request: {code} {message}")
            raise UseBotocore(f"{op} answered {r.status} {code}", maybe_applied=False)
        retryable = code in RETRYABLE_CODES or r.status in RETRYABLE_STATUS
        if (r.status in THROTTLE_STATUS or code in THROTTLE_CODES) and self.on_throttle:
            self.on_throttle()
        err = StorageError(op, bucket, key, code, message, status=r.status, retryable=retryable, retried=retried)
        if retryable:
            raise Transient(err)
        raise err

    def _send(
        self,
        route: Route,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes | None,
        payload: str,
    ) -> Response:
        # ``query`` goes on the wire as given (``delete``, or ``list_query``'s), RFC 3986-encoded; it is signed in
        # its canonical form (``delete=``; sorted).
        if self.limiter is not None:
            self.limiter.on_sending_request(request=None)  # blocks while the token bucket is empty
        signed = self.signed(route, method, path, query, headers, payload)
        conns: dict[tuple[str, int], Connection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        conn = conns.get((route.host, route.port))
        if conn is None:
            conn = conns[route.host, route.port] = Connection(
                route.host, route.port, self._ssl, connect_timeout=self.connect_timeout, read_timeout=self.read_timeout
            )
        return conn.exchange(method, f"{path}?{query}" if query else path, signed, body)

    def signed(
        self, route: Route, method: str, path: str, query: str, headers: dict[str, str], payload: str
    ) -> dict[str, str]:
        """``headers`` (changed in place) with what every lean request carries: signature, Host, User-Agent."""
        signed = route.signer.sign(method, route.netloc, path, canonical_query(query), headers, payload, amz_now())
        signed["Host"] = route.netloc
        signed["User-Agent"] = self._user_agent
        return signed


def copy_etag(r: Response) -> str:
    """The new object's ETag in a CopyObject's (checked) answer, as sent."""
    return _xml_text(_ETAG, r.body)


def request_head(method: str, target: str, headers: dict[str, str], body: bytes | None) -> bytes:
    """The request line and headers of one HTTP/1.1 request (a header value with CR or LF is refused)."""
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"invalid value for header {name}: {value!r}")
        lines.append(f"{name}: {value}\r\n")
    if body is not None or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {len(body or b'')}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def _as_is(r: Response) -> Response:
    return r


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
            self.sock.sendall(request_head(method, target, headers, body) + (body or b""))
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
    """True if an idle keep-alive socket was closed by the server (readable with no request outstanding).

    ``poll``, not ``select``: a worker with hundreds of connections in flight has descriptors above 1023, which
    ``select`` refuses (it would read every such connection as closed and reconnect it each time)."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True
