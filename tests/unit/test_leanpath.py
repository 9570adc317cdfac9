"""The lean request path (``s3seg.leanpath``) sends what botocore sends and reads answers as botocore would.

Three oracles, none of them the code under test:

* botocore's own client: for the same call (``before-send`` captures the prepared request, nothing is sent),
  the lean path must produce the same URL, the same semantic headers and the same Authorization header;
* botocore's ``S3SigV4Auth`` applied to the request the lean path actually sends (also covers DeleteObjects,
  whose body and checksum header legitimately differ from botocore's);
* a scripted stdlib HTTP server on 127.0.0.1 for retries, errors, hand-overs to botocore and connection reuse.

``Storage``'s side of the hand-over (``UseBotocore`` -> the same request through botocore) is tested here with a
``before-send`` stub standing in for the store; the functional tests run it against real stores.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import socket
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from botocore import UNSIGNED
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from leanstub import (
    ACCESS_KEY,
    SECRET_KEY,
    TOKEN,
    Creds,
    Reply,
    Sent,
    Stub,
    _answer_for,
    _Raw,
    _text,
    assert_same_request,
    error_xml,
    running_stub,
    signed_by_botocore,
)

import s3seg.leanpath as leanpath
from s3seg.errors import StorageError
from s3seg.leanpath import (
    LeanPath,
    SigV4,
    UseBotocore,
    copy_source,
    delete_body,
    object_path,
    parse_delete_result,
)
from s3seg.storage import ClientSpec, Storage, _info_from_headers, make_storage

NOWHERE = "http://127.0.0.1:9"  # the discard port: these botocore clients never send (before-send answers)
DATE = "20240102T030405Z"
NS = "http://s3.amazonaws.com/doc/2006-03-01/"


# -- a scripted HTTP server (``leanstub.Stub``): the one seam (the lean path's own sockets and parser are tested too)
def close_connection(lean: LeanPath) -> None:
    """Close the calling thread's keep-alive connection (so the stub's handler thread ends)."""
    lean.close()


def lean_for(endpoint: str, creds: Creds, region: str = "us-east-1", **kw: Any) -> LeanPath:
    args: dict[str, Any] = {"max_attempts": 3, "connect_timeout": 2, "read_timeout": 2, **kw}
    return LeanPath(endpoint, SigV4(creds, region), **args)


# -- oracle 1: what botocore sends for the same call ----------------------------------------------------------
class BotocoreCapture:
    """A botocore client whose requests are captured in ``before-send`` and answered there (never sent)."""

    def __init__(self, endpoint: str, region: str, token: str | None) -> None:
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            aws_session_token=token,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "total_max_attempts": 1},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        self.client.meta.events.register("before-send.s3", self._answer)
        self.sent: list[Sent] = []

    def _answer(self, request: Any, event_name: str, **_: Any) -> AWSResponse:
        parts = urlsplit(request.url)
        self.sent.append(
            Sent(
                request.method,
                parts.path + (f"?{parts.query}" if parts.query else ""),
                {k.lower(): _text(v) for k, v in request.headers.items()},
                request.body or b"",
            )
        )
        return AWSResponse(request.url, 200, {}, _Raw(_answer_for(event_name.rsplit(".", 1)[1])))

    def last(self) -> Sent:
        return self.sent[-1]


class Wire:
    """A stub answering every request sensibly, with one botocore capture and one lean path per (region, token)."""

    def __init__(self, stub: Stub) -> None:
        self.stub = stub
        stub.default = self._default
        self._boto: dict[tuple[str, str | None], BotocoreCapture] = {}
        self._lean: dict[tuple[str, str | None], LeanPath] = {}

    @staticmethod
    def _default(seen: Sent) -> Reply:
        if seen.method == "PUT":
            return Reply(200, _answer_for("CopyObject"))
        if seen.method == "POST":
            return Reply(200, _answer_for("DeleteObjects"))
        return Reply(204 if seen.method == "DELETE" else 200)

    def botocore(self, region: str, token: str | None) -> BotocoreCapture:
        if (region, token) not in self._boto:  # building a client costs ~100 ms: one per pair
            self._boto[region, token] = BotocoreCapture(self.stub.endpoint, region, token)
        return self._boto[region, token]

    def lean(self, region: str, token: str | None) -> LeanPath:
        if (region, token) not in self._lean:
            self._lean[region, token] = lean_for(self.stub.endpoint, Creds(token=token), region, max_attempts=1)
        return self._lean[region, token]

    def last(self) -> Sent:
        return self.stub.seen[-1]

    def close(self) -> None:
        for lean in self._lean.values():
            close_connection(lean)


@pytest.fixture(scope="module")
def wire() -> Iterator[Wire]:
    with running_stub() as stub:
        w = Wire(stub)
        yield w
        w.close()


# Headers one side sends and the other need not: unsigned SDK telemetry, and framing.


def resign_botocore_request(boto: Sent, endpoint: str, creds: Creds, region: str) -> str:
    """Sign botocore's exact signed header set with ``SigV4``; returns the Authorization it produces."""
    auth = boto.headers["authorization"]
    signed_names = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {
        name: boto.headers[name]
        for name in signed_names
        if name not in ("host", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token")
    }
    path, _, query = boto.target.partition("?")
    canonical_query = "&".join(sorted(p if "=" in p else p + "=" for p in query.split("&"))) if query else ""
    out = SigV4(creds, region).sign(
        boto.method,
        urlsplit(endpoint).netloc,
        path,
        canonical_query,
        headers,
        boto.headers["x-amz-content-sha256"],
        amz_date=boto.headers["x-amz-date"],
    )
    return out["Authorization"]


# Keys: any Unicode S3 accepts (everything but lone surrogates, which have no UTF-8), salted with the
# characters that broke S3 clients before.
HOSTILE = [
    " ",
    "+",
    "%2B",
    "?versionId=x",
    "//",
    "~",
    "&",
    "<",
    ">",
    '"',
    "'",
    "/",
    "#",
    ";",
    "=",
    "%",
    "\\",
    "é",
    "日本",
    "😀",
    "\U0010fffd",
    "\t",
    "\n",
    "\r",
    "\x00",
    "\x7f",
    ".",
    "..",
    "*",
]
keys = st.lists(
    st.one_of(st.sampled_from(HOSTILE), st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8)),
    min_size=1,
    max_size=8,
).map("".join)
regions = st.sampled_from(["us-east-1", "eu-central-1", "ap-southeast-2"])
tokens = st.sampled_from([None, TOKEN])
# (the last one: SigV4 signs header values with inner whitespace runs collapsed)
etags = st.sampled_from([None, '"9e107d9d372bb6826bd81d3542a419d6"', '"d41d8cd98f00b204e9800998ecf8427e-2"', '"a  b"'])
OFFLINE = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@OFFLINE
@example(
    src_key="/lead//x y+%2B?versionId=x~&<>\"'😀",
    dst_key="a+b %2B\U0010fffd/./../",
    region="us-east-1",
    token=TOKEN,
    if_match='"a  b"',
    if_none_match=True,
    storage_class="STANDARD_IA",
)
@given(
    src_key=keys,
    dst_key=keys,
    region=regions,
    token=tokens,
    if_match=etags,
    if_none_match=st.booleans(),
    storage_class=st.sampled_from(["", "STANDARD", "STANDARD_IA", "GLACIER_IR"]),
)
def test_a_copy_is_sent_exactly_as_botocore_sends_it(
    wire: Wire,
    src_key: str,
    dst_key: str,
    region: str,
    token: str | None,
    if_match: str | None,
    if_none_match: bool,
    storage_class: str,
) -> None:
    boto = wire.botocore(region, token)
    kwargs: dict[str, Any] = {
        "Bucket": "dst-bucket",
        "Key": dst_key,
        "CopySource": {"Bucket": "src.bucket-1", "Key": src_key},
        "MetadataDirective": "COPY",
        "TaggingDirective": "COPY",
    }
    if if_match:
        kwargs["CopySourceIfMatch"] = if_match
    if if_none_match:
        kwargs["IfNoneMatch"] = "*"
    if storage_class and storage_class != "STANDARD":
        kwargs["StorageClass"] = storage_class
    boto.client.copy_object(**kwargs)
    theirs = boto.last()
    assert theirs.target == object_path("/dst-bucket", dst_key)
    assert theirs.headers["x-amz-copy-source"] == copy_source("src.bucket-1", src_key)
    assert (
        resign_botocore_request(theirs, wire.stub.endpoint, Creds(token=token), region)
        == (theirs.headers["authorization"])
    )

    with mock.patch.object(leanpath, "amz_now", lambda: theirs.headers["x-amz-date"]):
        etag = wire.lean(region, token).copy(
            "src.bucket-1",
            src_key,
            "dst-bucket",
            dst_key,
            if_match=if_match,
            if_none_match=if_none_match,
            storage_class=storage_class,
        )
    assert etag == '"e"'
    assert_same_request(wire.last(), theirs, wire.stub.endpoint)


@OFFLINE
@given(key=keys, region=regions, token=tokens, if_match=etags)
def test_head_and_delete_are_sent_exactly_as_botocore_sends_them(
    wire: Wire, key: str, region: str, token: str | None, if_match: str | None
) -> None:
    boto = wire.botocore(region, token)
    lean = wire.lean(region, token)

    boto.client.head_object(Bucket="b", Key=key)
    head = boto.last()
    assert head.target == object_path("/b", key)
    with mock.patch.object(leanpath, "amz_now", lambda: head.headers["x-amz-date"]):
        assert lean.head("b", key) is not None
    assert_same_request(wire.last(), head, wire.stub.endpoint)

    boto.client.delete_object(Bucket="b", Key=key, **({"IfMatch": if_match} if if_match else {}))
    delete = boto.last()
    assert (
        resign_botocore_request(delete, wire.stub.endpoint, Creds(token=token), region)
        == (delete.headers["authorization"])
    )
    with mock.patch.object(leanpath, "amz_now", lambda: delete.headers["x-amz-date"]):
        lean.delete("b", key, if_match=if_match)
    assert_same_request(wire.last(), delete, wire.stub.endpoint)


xml_chars = st.characters(exclude_categories=("Cs",), exclude_characters="\ufffe\uffff", min_codepoint=0x20)
xml_keys = (
    st.lists(
        st.one_of(
            st.sampled_from(["\t", "\n", "\r", "&", "<", ">", '"', "'", "]]>", "&amp;", "😀"]), st.text(xml_chars)
        ),
        min_size=1,
        max_size=6,
    )
    .map("".join)
    .filter(bool)
)
batches = st.lists(st.tuples(xml_keys, etags), min_size=1, max_size=6)


@OFFLINE
@given(items=batches, region=regions, token=tokens)
def test_delete_objects_is_signed_as_botocore_signs_it(
    wire: Wire, items: list[tuple[str, str | None]], region: str, token: str | None
) -> None:
    wire.lean(region, token).delete_objects("bkt", items)
    sent = wire.last()
    assert (sent.method, sent.target) == ("POST", "/bkt?delete")
    assert sent.body == delete_body(items)
    assert sent.headers["content-md5"] == base64.b64encode(hashlib.md5(sent.body).digest()).decode()
    assert sent.headers["authorization"] == signed_by_botocore(sent, wire.stub.endpoint, Creds(token=token), region)

    # botocore's own DeleteObjects (another body, CRC32 instead of MD5): SigV4 over its exact request agrees,
    # and it asks to delete the same keys with the same ETags. (botocore writes a raw \r, which XML reads as
    # \n: that is botocore's flaw, so \r is left out of that comparison.)
    boto = wire.botocore(region, token)
    objects = [{"Key": k, **({"ETag": e} if e else {})} for k, e in items]
    boto.client.delete_objects(Bucket="bkt", Delete={"Objects": objects, "Quiet": False})  # type: ignore[typeddict-item]
    theirs = boto.last()
    assert theirs.target == sent.target
    assert (
        resign_botocore_request(theirs, wire.stub.endpoint, Creds(token=token), region)
        == (theirs.headers["authorization"])
    )
    if not any("\r" in k for k, _ in items):
        assert _delete_items(theirs.body) == _delete_items(sent.body) == items


@given(items=batches)
def test_delete_body_round_trips_every_key_and_etag(items: list[tuple[str, str | None]]) -> None:
    root = ElementTree.fromstring(delete_body(items))
    assert root.tag == f"{{{NS}}}Delete"
    assert root.find(f"{{{NS}}}Quiet").text == "false"  # type: ignore[union-attr]
    assert _delete_items(delete_body(items)) == items


def _delete_items(body: bytes) -> list[tuple[str, str | None]]:
    root = ElementTree.fromstring(body)
    out: list[tuple[str, str | None]] = []
    for obj in root.iter(f"{{{NS}}}Object"):
        key = obj.find(f"{{{NS}}}Key")
        etag = obj.find(f"{{{NS}}}ETag")
        out.append(("" if key is None else key.text or "", None if etag is None else etag.text))
    return out


@pytest.mark.parametrize("key", ["a b+c%2B?versionId=1", "😀/日本/é", "/lead//double~", "&<>\"'", "\r\n\t", "x" * 300])
@pytest.mark.parametrize("token", [None, TOKEN])
def test_every_lean_request_carries_the_signature_botocore_computes_for_it(
    wire: Wire, key: str, token: str | None
) -> None:
    creds = Creds(token=token)
    lean = lean_for(wire.stub.endpoint, creds, "eu-west-3", max_attempts=1)
    start = len(wire.stub.seen)
    try:
        with mock.patch.object(leanpath, "amz_now", lambda: DATE):
            lean.copy("s", key, "d", key, if_match='"x"', if_none_match=True, storage_class="GLACIER_IR")
            lean.head("d", key)
            lean.delete("d", key, if_match='"x"')
            lean.delete_objects("d", [(key, '"x"'), ("other", None)])
    finally:
        close_connection(lean)
    sent_all = wire.stub.seen[start:]
    assert [s.method for s in sent_all] == ["PUT", "HEAD", "DELETE", "POST"]
    for sent in sent_all:
        assert sent.headers["x-amz-date"] == DATE
        if token:
            assert sent.headers["x-amz-security-token"] == token
            assert "x-amz-security-token" in sent.headers["authorization"].split("SignedHeaders=")[1]
        else:
            assert "x-amz-security-token" not in sent.headers
        assert sent.headers["authorization"] == signed_by_botocore(sent, wire.stub.endpoint, creds, "eu-west-3")


def test_a_rotated_secret_or_a_new_day_signs_with_a_new_key() -> None:
    creds = Creds()
    signer = SigV4(creds, "us-east-1")

    def sign(amz_date: str = DATE) -> str:
        return signer.sign("GET", "h", "/b/k", "", {}, leanpath._EMPTY_SHA256, amz_date)["Authorization"]

    def fresh(amz_date: str = DATE) -> str:
        return SigV4(Creds(secret_key=creds.secret_key), "us-east-1").sign(
            "GET", "h", "/b/k", "", {}, leanpath._EMPTY_SHA256, amz_date
        )["Authorization"]

    first = sign()
    assert first == fresh()
    creds.secret_key = "rotated-secret"
    rotated = sign()
    assert rotated != first
    assert rotated == fresh()
    next_day = sign("20240103T000000Z")
    assert next_day == fresh("20240103T000000Z")
    assert sign() == rotated  # back to the first day: recomputed, not a stale key


# -- DeleteResult parsing ---------------------------------------------------------------------------------------
MOTO_RESULT = b"""<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01"><Deleted><Key>a&amp;b</Key></Deleted>
<Deleted><Key>sp ace</Key></Deleted><Error><Key>locked</Key><Code>AccessDenied</Code><Message>Access Denied</Message>
</Error></DeleteResult>"""
AWS_RESULT = b"""<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Deleted><Key>gone/&#13;cr&lt;&gt;</Key><VersionId>v1</VersionId><DeleteMarker>true</DeleteMarker>
    <DeleteMarkerVersionId>v2</DeleteMarkerVersionId></Deleted>
  <Error><Key>kept &quot;q&quot;</Key><Code>PreconditionFailed</Code>
    <Message>At least one of the pre-conditions you specified did not hold</Message></Error>
  <Error><Key>\xf0\x9f\x98\x80</Key><Code>InternalError</Code><Message></Message></Error>
</DeleteResult>"""
PLAIN_RESULT = (
    b"<DeleteResult><Deleted><Key>x</Key></Deleted><Error><Key>y</Key><Code>NoSuchKey</Code></Error></DeleteResult>"
)


@pytest.mark.parametrize(
    ("body", "deleted", "errors"),
    [
        (MOTO_RESULT, {"a&b", "sp ace"}, [("locked", "AccessDenied", "Access Denied")]),
        (
            AWS_RESULT,
            {"gone/\rcr<>"},
            [
                ('kept "q"', "PreconditionFailed", "At least one of the pre-conditions you specified did not hold"),
                ("😀", "InternalError", ""),
            ],
        ),
        (PLAIN_RESULT, {"x"}, [("y", "NoSuchKey", "")]),
    ],
    ids=["moto", "aws-namespaced", "no-namespace"],
)
def test_delete_results_are_parsed_whatever_the_namespace(
    body: bytes, deleted: set[str], errors: list[tuple[str, str, str]]
) -> None:
    assert parse_delete_result(body) == (deleted, errors)


# -- behaviour on the wire -------------------------------------------------------------------------------------------
@pytest.fixture
def stub() -> Iterator[Stub]:
    with running_stub() as s:
        yield s


class Clock:
    """leanpath's view of ``time``, with the backoff sleeps recorded instead of slept."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(leanpath, "time", fake)
    return fake


@pytest.fixture
def make_lean(stub: Stub, clock: Clock) -> Iterator[Callable[..., LeanPath]]:
    made: list[LeanPath] = []

    def make(**kw: Any) -> LeanPath:
        lean = lean_for(stub.endpoint, Creds(), **kw)
        made.append(lean)
        return lean

    yield make
    for lean in made:
        close_connection(lean)


@pytest.fixture
def lean(make_lean: Callable[..., LeanPath]) -> LeanPath:
    return make_lean()


COPIED = b'<?xml version="1.0"?><CopyObjectResult><ETag>&quot;abc&quot;</ETag></CopyObjectResult>'
PRECONDITION = Reply(412, error_xml("PreconditionFailed", "At least one of the pre-conditions did not hold"))
SLOWDOWN = Reply(503, error_xml("SlowDown", "Please reduce your request rate."))


def copy(lean: LeanPath, **kw: Any) -> str:
    args: dict[str, Any] = {"if_match": '"abc"', "if_none_match": True, "storage_class": ""}
    args.update(kw)
    return lean.copy("src", "a key+", "dst", "d/é", **args)


def test_copy_sends_the_signed_request_over_the_wire_and_reads_the_etag(stub: Stub, lean: LeanPath) -> None:
    stub.script(Reply(200, COPIED))
    assert copy(lean) == '"abc"'  # &quot; entities unescaped
    (seen,) = stub.seen
    assert (seen.method, seen.target) == ("PUT", "/dst/d/%C3%A9")
    assert seen.headers["x-amz-copy-source"] == "src/a%20key%2B"
    assert seen.headers["if-none-match"] == "*"
    assert seen.headers["x-amz-copy-source-if-match"] == '"abc"'
    assert seen.headers["host"] == stub.endpoint.removeprefix("http://")
    assert seen.headers["content-length"] == "0"
    assert seen.headers["authorization"] == signed_by_botocore(seen, stub.endpoint, Creds(), "us-east-1")


def test_a_412_is_precondition_failed_and_not_retried(stub: Stub, lean: LeanPath, clock: Clock) -> None:
    stub.script(PRECONDITION)
    with pytest.raises(StorageError) as info:
        copy(lean)
    err = info.value
    assert (err.code, err.status, err.retried, err.retryable) == ("PreconditionFailed", 412, False, False)
    assert len(stub.seen) == 1
    assert clock.sleeps == []


def test_a_bodyless_412_is_precondition_failed_too(stub: Stub, lean: LeanPath) -> None:
    stub.script(Reply(412))
    with pytest.raises(StorageError) as info:
        lean.delete("b", "k", if_match='"x"')
    assert info.value.code == "PreconditionFailed"


def test_slowdown_is_retried_with_backoff_until_it_succeeds(stub: Stub, lean: LeanPath, clock: Clock) -> None:
    stub.script(SLOWDOWN, Reply(200, COPIED))
    assert copy(lean) == '"abc"'
    assert len(stub.seen) == 2
    assert len(clock.sleeps) == 1
    assert 0 <= clock.sleeps[0] <= 1.0
    assert stub.seen[0].headers["x-amz-copy-source"] == stub.seen[1].headers["x-amz-copy-source"]


def test_every_throttling_answer_is_reported_to_the_concurrency_limit_even_when_retried_here(
    stub: Stub, lean: LeanPath, clock: Clock
) -> None:
    seen: list[int] = []
    lean.on_throttle = lambda: seen.append(1)
    stub.script(SLOWDOWN, SLOWDOWN, Reply(200, COPIED))
    assert copy(lean) == '"abc"'
    assert len(seen) == 2  # the worker's adaptive limit backs off on each, though the caller saw a success


def test_slowdown_on_every_attempt_is_a_retryable_error_marked_retried(
    stub: Stub, lean: LeanPath, clock: Clock
) -> None:
    stub.script(SLOWDOWN, SLOWDOWN, SLOWDOWN, Reply(200, COPIED))
    with pytest.raises(StorageError) as info:
        copy(lean)
    err = info.value
    assert (err.code, err.status, err.retryable, err.retried) == ("SlowDown", 503, True, True)
    assert len(stub.seen) == 3  # max_attempts, not one more
    assert len(clock.sleeps) == 2
    assert clock.sleeps[1] <= 2.0


def test_a_412_after_a_retry_is_marked_retried_so_the_protocol_rechecks(stub: Stub, lean: LeanPath) -> None:
    stub.script(Reply(500, error_xml("InternalError")), PRECONDITION)
    with pytest.raises(StorageError) as info:
        copy(lean)
    assert (info.value.code, info.value.retried) == ("PreconditionFailed", True)


def test_a_404_after_a_lost_answer_is_marked_retried(stub: Stub, lean: LeanPath) -> None:
    stub.script(Reply(drop=True), Reply(404, error_xml("NoSuchKey")))
    with pytest.raises(StorageError) as info:
        lean.delete("b", "k", if_match=None)
    assert (info.value.code, info.value.retried) == ("NoSuchKey", True)
    assert len(stub.seen) == 2


def test_an_error_inside_a_200_copy_answer_is_retried(stub: Stub, lean: LeanPath, clock: Clock) -> None:
    stub.script(Reply(200, error_xml("InternalError", "We encountered an internal error")), Reply(200, COPIED))
    assert copy(lean) == '"abc"'
    assert len(stub.seen) == 2
    assert len(clock.sleeps) == 1


def test_a_200_copy_answer_without_an_etag_is_never_taken_as_success(stub: Stub, lean: LeanPath) -> None:
    stub.script(*[Reply(200, b"<CopyObjectResult></CopyObjectResult>")] * 3)
    with pytest.raises(StorageError) as info:
        copy(lean)
    assert info.value.retryable and info.value.retried
    assert len(stub.seen) == 3


def test_a_dropped_connection_is_retried_on_a_new_connection(stub: Stub, lean: LeanPath, clock: Clock) -> None:
    stub.script(Reply(drop=True), Reply(200, COPIED))
    assert copy(lean) == '"abc"'
    assert len(stub.seen) == 2
    assert stub.connections == 2
    assert len(clock.sleeps) == 1  # a retry, with its backoff


def test_dropped_connections_on_every_attempt_are_a_retryable_transport_error(stub: Stub, lean: LeanPath) -> None:
    stub.script(*[Reply(drop=True)] * 3)
    with pytest.raises(StorageError) as info:
        lean.head("b", "k")
    assert info.value.retryable and info.value.retried
    assert info.value.status is None
    assert len(stub.seen) == 3


def test_a_read_timeout_is_retried(stub: Stub, make_lean: Callable[..., LeanPath]) -> None:
    lean = make_lean(read_timeout=0.2)
    stub.script(Reply(200, COPIED, delay=0.6), Reply(200, COPIED))
    assert copy(lean) == '"abc"'
    assert len(stub.seen) == 2


def test_head_answers_headers_or_none(stub: Stub, lean: LeanPath) -> None:
    stub.script(
        Reply(200, headers={"ETag": '"abc"', "X-Amz-Meta-Color": "blue", "x-amz-storage-class": "STANDARD_IA"}),
        Reply(404),
    )
    found = lean.head("b", "k")
    assert found is not None
    assert (found["etag"], found["x-amz-meta-color"], found["x-amz-storage-class"]) == ('"abc"', "blue", "STANDARD_IA")
    assert lean.head("b", "missing") is None
    assert [s.method for s in stub.seen] == ["HEAD", "HEAD"]


def test_a_bodyless_403_on_head_goes_to_botocore_as_suspect(stub: Stub, lean: LeanPath) -> None:
    stub.script(Reply(403))
    with pytest.raises(UseBotocore) as info:
        lean.head("b", "k")
    assert (info.value.suspect, info.value.maybe_applied) == (True, False)
    assert lean.enabled  # only botocore's verdict turns the path off


@pytest.mark.parametrize(
    "reply",
    [
        Reply(301, error_xml("PermanentRedirect")),
        Reply(307, headers={"Location": "http://elsewhere/"}),
        Reply(400, error_xml("AuthorizationHeaderMalformed", "the region 'us-east-1' is wrong; expecting 'x'")),
        Reply(400, error_xml("ExpiredToken")),
        Reply(403, error_xml("RequestTimeTooSkewed")),
    ],
    ids=["301", "307", "wrong-region", "expired-token", "clock-skew"],
)
def test_answers_botocore_recovers_from_are_handed_to_botocore(stub: Stub, lean: LeanPath, reply: Reply) -> None:
    stub.script(reply)
    with pytest.raises(UseBotocore) as info:
        copy(lean)
    assert (info.value.maybe_applied, info.value.suspect) == (False, False)
    assert lean.enabled
    assert len(stub.seen) == 1


def test_a_hand_over_after_a_retry_says_the_request_may_have_been_applied(stub: Stub, lean: LeanPath) -> None:
    stub.script(SLOWDOWN, Reply(301, error_xml("PermanentRedirect")))
    with pytest.raises(UseBotocore) as info:
        copy(lean)
    assert info.value.maybe_applied


def test_a_refused_signature_turns_the_lean_path_off(stub: Stub, lean: LeanPath) -> None:
    stub.script(Reply(403, error_xml("SignatureDoesNotMatch", "The request signature we calculated does not match")))
    with pytest.raises(UseBotocore):
        copy(lean)
    assert not lean.enabled
    with pytest.raises(UseBotocore):
        lean.head("b", "k")
    assert len(stub.seen) == 1  # nothing more was sent the lean way


def test_access_denied_is_suspect_not_final(stub: Stub, lean: LeanPath) -> None:
    stub.script(Reply(403, error_xml("AccessDenied", "Access Denied")))
    with pytest.raises(UseBotocore) as info:
        lean.delete("b", "k", if_match=None)
    assert info.value.suspect
    assert lean.enabled


def test_sequential_requests_reuse_one_connection(stub: Stub, lean: LeanPath) -> None:
    stub.script(*[Reply(200, COPIED)] * 3, Reply(204), Reply(200, headers={"ETag": '"e"'}), Reply(404))
    for _ in range(3):
        copy(lean)
    lean.delete("b", "k", if_match=None)
    lean.head("b", "k")
    assert lean.head("b", "k") is None
    assert len(stub.seen) == 6
    assert stub.connections == 1


def test_each_thread_has_its_own_connection(stub: Stub, lean: LeanPath) -> None:
    stub.script(*[Reply(204)] * 4)

    def two_deletes() -> None:
        lean.delete("b", "k", if_match=None)
        lean.delete("b", "k", if_match=None)
        close_connection(lean)

    threads = [threading.Thread(target=two_deletes) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(stub.seen) == 4
    assert stub.connections == 2


def test_a_connection_close_answer_is_honoured(stub: Stub, lean: LeanPath, clock: Clock) -> None:
    stub.script(Reply(204, headers={"Connection": "close"}), Reply(204))
    lean.delete("b", "k", if_match=None)
    lean.delete("b", "k", if_match=None)
    assert stub.connections == 2
    assert clock.sleeps == []  # no failed attempt on the closed connection


def test_an_idle_connection_the_server_closed_is_replaced_before_use(
    stub: Stub, lean: LeanPath, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leanpath, "_IDLE_CHECK_SECONDS", 0.0)
    stub.script(Reply(204, close_after=True), Reply(204))
    lean.delete("b", "k", if_match=None)
    deadline = time.monotonic() + 5
    while stub.closed < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # the FIN reaches the client
    lean.delete("b", "k", if_match=None)
    assert len(stub.seen) == 2
    assert stub.connections == 2
    assert clock.sleeps == []  # replaced up front, not discovered by a failed (maybe applied) attempt


def test_delete_objects_posts_the_batch_and_reads_per_key_results(stub: Stub, lean: LeanPath) -> None:
    result = (
        b'<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Deleted><Key>a&amp;b</Key></Deleted>'
        b"<Error><Key>c</Key><Code>PreconditionFailed</Code><Message>m</Message></Error></DeleteResult>"
    )
    stub.script(Reply(200, result))
    items: list[tuple[str, str | None]] = [("a&b", None), ("c", '"x"')]
    assert lean.delete_objects("bkt", items) == ({"a&b"}, [("c", "PreconditionFailed", "m")])
    (seen,) = stub.seen
    assert (seen.method, seen.target, seen.body) == ("POST", "/bkt?delete", delete_body(items))
    assert seen.headers["content-md5"] == base64.b64encode(hashlib.md5(seen.body).digest()).decode()
    assert seen.headers["x-amz-content-sha256"] == hashlib.sha256(seen.body).hexdigest()


def test_an_unreadable_delete_answer_leaves_every_key_unconfirmed(stub: Stub, lean: LeanPath) -> None:
    stub.script(Reply(200, b"<DeleteResult><Deleted><Key>a</Ke"))
    with pytest.raises(StorageError) as info:
        lean.delete_objects("bkt", [("a", None)])
    assert (info.value.code, info.value.retryable) == ("MalformedResponse", True)


def http_answer(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode() + body


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_a_chunked_answer_is_read_whole_and_the_connection_kept(stub: Stub, lean: LeanPath, clock: Clock) -> None:
    stub.script(
        Reply(raw=http_answer("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n", chunked(COPIED[:20], COPIED[20:]))),
        Reply(204),
    )
    assert copy(lean) == '"abc"'
    lean.delete("b", "k", if_match=None)
    assert (len(stub.seen), stub.connections, clock.sleeps) == (2, 1, [])


def test_an_answer_delimited_by_the_close_is_read_to_the_end(stub: Stub, lean: LeanPath, clock: Clock) -> None:
    stub.script(Reply(raw=http_answer("HTTP/1.1 200 OK\nConnection: close\n\n", COPIED), close_after=True), Reply(204))
    assert copy(lean) == '"abc"'
    lean.delete("b", "k", if_match=None)
    assert (len(stub.seen), stub.connections, clock.sleeps) == (2, 2, [])


def test_an_http_1_0_answer_is_not_kept_alive(stub: Stub, lean: LeanPath, clock: Clock) -> None:
    stub.script(Reply(raw=http_answer("HTTP/1.0 204 No Content\n\n"), close_after=True), Reply(204))
    lean.delete("b", "k", if_match=None)
    lean.delete("b", "k", if_match=None)
    assert (len(stub.seen), stub.connections, clock.sleeps) == (2, 2, [])


def test_interim_answers_and_bodyless_204s_are_handled(stub: Stub, lean: LeanPath, clock: Clock) -> None:
    stub.script(
        Reply(raw=http_answer("HTTP/1.1 100 Continue\n\nHTTP/1.1 204 No Content\nx-amz-id-2: a\n\n")),
        Reply(raw=http_answer("HTTP/1.1 204 No Content\n\n")),
        Reply(200, COPIED),
    )
    lean.delete("b", "k", if_match=None)
    lean.delete("b", "k", if_match=None)
    assert copy(lean) == '"abc"'  # the connection was left clean for the next answer
    assert (len(stub.seen), stub.connections, clock.sleeps) == (3, 1, [])


@pytest.mark.parametrize(
    "broken",
    [
        http_answer("HTTP/1.1 200 OK\nContent-Length: 500\n\n", COPIED),  # cut short
        http_answer("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n", b"40\r\n" + COPIED[:10]),  # cut chunk
        http_answer("HTTP/1.1 200 OK\nContent-Le"),  # cut in the headers
        b"SSH-2.0-OpenSSH_9.2\r\n",  # not HTTP
        http_answer("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n", b"zz\r\n"),  # bad chunk size
    ],
    ids=["short-body", "short-chunk", "short-headers", "not-http", "bad-chunk-size"],
)
def test_a_broken_answer_is_a_lost_answer_retried_on_a_new_connection(
    stub: Stub, lean: LeanPath, clock: Clock, broken: bytes
) -> None:
    stub.script(Reply(raw=broken, close_after=True), PRECONDITION)
    with pytest.raises(StorageError) as info:
        copy(lean)
    assert (info.value.code, info.value.retried) == ("PreconditionFailed", True)  # the first may have applied
    assert (len(stub.seen), stub.connections, len(clock.sleeps)) == (2, 2, 1)


def test_a_lean_copy_etag_comes_back_quoted_as_botocores_does(stub: Stub, lean: LeanPath, boto: Botocore) -> None:
    # SeaweedFS answers CopyObject with an unquoted ETag (FINDINGS.md); callers compare quoted ones.
    stub.script(Reply(200, b"<CopyObjectResult><ETag>abc</ETag></CopyObjectResult>"))
    boto.replies.append(Reply(200, b"<CopyObjectResult><ETag>abc</ETag></CopyObjectResult>"))
    args: dict[str, Any] = {"if_match": None, "if_none_match": False, "storage_class": ""}
    assert Storage(boto.client, lean).copy("s", "k", "d", "k", **args) == '"abc"'
    assert Storage(boto.client).copy("s", "k", "d", "k", **args) == '"abc"'


def test_an_endpoint_path_prefix_is_kept(stub: Stub, clock: Clock) -> None:
    lean = lean_for(stub.endpoint + "/s3/", Creds())
    stub.script(Reply(204))
    lean.delete("b", "k y", if_match=None)
    close_connection(lean)
    assert stub.seen[0].target == "/s3/b/k%20y"


# -- Storage: hand-over to botocore, and the lean path's place in it ----------------------------------------------
class Botocore:
    """A botocore client answered by scripted replies in ``before-send`` (recorded; nothing is sent)."""

    def __init__(self) -> None:
        self.client = boto3.client(
            "s3",
            endpoint_url=NOWHERE,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "total_max_attempts": 1}),
        )
        self.client.meta.events.register("before-send.s3", self._answer)
        self.replies: list[Reply] = []
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    def _answer(self, request: Any, event_name: str, **_: Any) -> AWSResponse:
        op = event_name.rsplit(".", 1)[1]
        self.seen.append((op, urlsplit(request.url).path, {k.lower(): _text(v) for k, v in request.headers.items()}))
        reply = self.replies.pop(0) if self.replies else Reply(599, error_xml("Unscripted"))
        return AWSResponse(request.url, reply.status, reply.headers, _Raw(reply.body))


@functools.cache
def _shared_botocore() -> Botocore:
    return Botocore()


@pytest.fixture
def boto() -> Botocore:
    shared = _shared_botocore()  # one client for the module (building one costs ~100 ms), cleared per test
    shared.replies.clear()
    shared.seen.clear()
    return shared


def test_a_redirected_copy_is_redone_by_botocore_and_its_result_returned(
    stub: Stub, lean: LeanPath, boto: Botocore
) -> None:
    stub.script(Reply(301, error_xml("PermanentRedirect")))
    boto.replies.append(Reply(200, b"<CopyObjectResult><ETag>fromboto</ETag></CopyObjectResult>"))
    storage = Storage(boto.client, lean)
    etag = storage.copy("src", "a+b", "dst", "d/k", if_match='"abc"', if_none_match=True, storage_class="")
    assert etag == '"fromboto"'
    assert len(stub.seen) == 1
    ((op, path, headers),) = boto.seen
    assert (op, path, headers["x-amz-copy-source"]) == ("CopyObject", "/dst/d/k", "src/a%2Bb")
    assert (headers["x-amz-copy-source-if-match"], headers["if-none-match"]) == ('"abc"', "*")
    assert lean.enabled


def test_a_wrong_region_hint_is_followed_through_botocore(stub: Stub, lean: LeanPath, boto: Botocore) -> None:
    stub.script(Reply(400, error_xml("AuthorizationHeaderMalformed", "expecting 'eu-west-1'")))
    boto.replies.append(Reply(204))
    Storage(boto.client, lean).delete("b", "k", if_match='"e"')
    assert [(op, path) for op, path, _ in boto.seen] == [("DeleteObject", "/b/k")]
    assert boto.seen[0][2]["if-match"] == '"e"'


@pytest.mark.parametrize("lean_first", [[], [SLOWDOWN]], ids=["handed-over-at-once", "after-a-503"])
def test_a_412_from_botocore_after_a_lean_retry_is_marked_retried(
    stub: Stub, lean: LeanPath, boto: Botocore, lean_first: list[Reply]
) -> None:
    stub.script(*lean_first, Reply(301, error_xml("PermanentRedirect")))
    boto.replies.append(PRECONDITION)
    with pytest.raises(StorageError) as info:
        Storage(boto.client, lean).copy("s", "k", "d", "k", if_match='"x"', if_none_match=True, storage_class="")
    assert info.value.code == "PreconditionFailed"
    assert info.value.retried is bool(lean_first)  # the lean 503 may have been applied


def test_a_404_on_delete_from_botocore_after_a_lean_retry_is_marked_retried(
    stub: Stub, lean: LeanPath, boto: Botocore
) -> None:
    stub.script(Reply(drop=True), Reply(307, headers={"Location": "http://x/"}))
    boto.replies.append(Reply(404, error_xml("NoSuchKey")))
    with pytest.raises(StorageError) as info:
        Storage(boto.client, lean).delete("b", "k", if_match='"e"')
    assert (info.value.code, info.value.retried) == ("NoSuchKey", True)


def test_botocore_succeeding_where_the_lean_path_was_refused_turns_it_off(
    stub: Stub, lean: LeanPath, boto: Botocore
) -> None:
    stub.script(Reply(403))
    boto.replies += [Reply(200, headers={"ETag": '"e"', "Content-Length": "3"}), Reply(404)]
    storage = Storage(boto.client, lean)
    info = storage.head("b", "k")
    assert info is not None and (info.etag, info.size) == ('"e"', 3)
    assert not lean.enabled
    assert storage.head("b", "k2") is None  # everything goes through botocore from now on
    assert len(stub.seen) == 1
    assert len(boto.seen) == 2


def test_botocore_refused_too_keeps_the_lean_path_on(stub: Stub, lean: LeanPath, boto: Botocore) -> None:
    stub.script(Reply(403, error_xml("AccessDenied")))
    boto.replies.append(Reply(403, error_xml("AccessDenied", "Access Denied")))
    with pytest.raises(StorageError) as info:
        Storage(boto.client, lean).delete("b", "k")
    assert info.value.code == "AccessDenied"
    assert lean.enabled


def test_a_head_refused_the_lean_way_but_answered_404_by_botocore_turns_it_off(
    stub: Stub, lean: LeanPath, boto: Botocore
) -> None:
    # The same HEAD, 403 signed one way and 404 the other: the lean signature is what the store refused.
    stub.script(Reply(403))
    boto.replies.append(Reply(404))
    assert Storage(boto.client, lean).head("b", "k") is None
    assert not lean.enabled


def test_delete_batch_hand_over_and_malformed_answers(stub: Stub, lean: LeanPath, boto: Botocore) -> None:
    storage = Storage(boto.client, lean)
    items: list[tuple[str, str | None]] = [("a", None), ("b", '"e"'), ("c", None)]
    stub.script(Reply(301, error_xml("PermanentRedirect")))
    boto.replies.append(
        Reply(
            200,
            b"<DeleteResult><Deleted><Key>a</Key></Deleted><Error><Key>b</Key><Code>PreconditionFailed</Code>"
            b"<Message>m</Message></Error></DeleteResult>",
        )
    )
    errors = storage.delete_batch("bkt", items)
    assert {k: e.code for k, e in errors.items()} == {"b": "PreconditionFailed", "c": "NotConfirmed"}
    assert [op for op, _, _ in boto.seen] == ["DeleteObjects"]

    boto.seen.clear()
    stub.script(Reply(200, b"not xml"))
    errors = storage.delete_batch("bkt", items)
    assert set(errors) == {"a", "b", "c"}
    assert all(e.code == "MalformedResponse" and e.retryable for e in errors.values())
    assert boto.seen == []  # a possibly applied batch is re-checked by the caller, not re-sent


def test_requests_the_lean_path_does_not_do_go_to_botocore(stub: Stub, lean: LeanPath, boto: Botocore) -> None:
    storage = Storage(boto.client, lean)
    boto.replies.append(Reply(200, b"<CopyObjectResult><ETag>x</ETag></CopyObjectResult>"))
    storage.copy(
        "s",
        "k",
        "d",
        "k",
        if_match=None,
        if_none_match=False,
        storage_class="",
        sse={"ServerSideEncryption": "aws:kms"},
    )
    boto.replies.append(Reply(200, headers={"ETag": '"e"', "Content-Length": "1", "x-amz-meta-a": "b"}))
    full = storage.head("b", "k", full=True)
    assert full is not None and full.raw is not None and full.metadata == {"a": "b"}
    assert stub.seen == []
    assert [op for op, _, _ in boto.seen] == ["CopyObject", "HeadObject"]


def test_a_turned_off_lean_path_is_not_used(stub: Stub, lean: LeanPath, boto: Botocore) -> None:
    lean.disable("test")
    boto.replies.append(Reply(204))
    Storage(boto.client, lean).delete("b", "k")
    assert stub.seen == []
    assert len(boto.seen) == 1


HEAD_HEADERS = {
    "ETag": '"9e107d9d372bb6826bd81d3542a419d6"',
    "Content-Length": "1234",
    "Content-Type": "text/csv; charset=utf-8",
    "x-amz-storage-class": "STANDARD_IA",
    "x-amz-meta-color": "blue",
    "x-amz-meta-multi-part-name": "v a l",
    "x-amz-server-side-encryption": "aws:kms",
    "x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:us-east-1:1:key/k",
    "x-amz-server-side-encryption-bucket-key-enabled": "true",
    "Last-Modified": "Tue, 02 Jan 2024 03:04:05 GMT",
}


@pytest.mark.parametrize(
    "headers",
    [
        HEAD_HEADERS,
        {"ETag": "unquoted", "Content-Length": "0"},
        {**HEAD_HEADERS, "x-amz-storage-class": "GLACIER", "x-amz-server-side-encryption-bucket-key-enabled": "false"},
    ],
    ids=["everything", "minimal", "bucket-key-off"],
)
def test_a_lean_head_reads_what_botocore_reads(
    stub: Stub, lean: LeanPath, boto: Botocore, headers: dict[str, str]
) -> None:
    boto.replies.append(Reply(200, headers=headers))
    theirs = Storage(boto.client).head("b", "k")
    stub.script(Reply(200, headers=headers))
    ours = Storage(boto.client, lean).head("b", "k")
    assert theirs is not None and ours is not None
    assert ours.raw is None
    assert ours == type(theirs)(**{**{f: getattr(theirs, f) for f in theirs.__slots__}, "raw": None})


def test_info_from_headers_defaults() -> None:
    info = _info_from_headers({"etag": '"e"', "content-length": "5"})
    assert (info.storage_class, info.content_type, info.metadata, info.sse, info.bucket_key_enabled) == (
        "STANDARD",
        "",
        {},
        None,
        None,
    )


# -- which clients get a lean path ---------------------------------------------------------------------------------
@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_make_storage_routes_explicit_endpoints_path_style_and_aws_per_bucket(no_proxy: None) -> None:
    spec = ClientSpec(
        endpoint_url="http://127.0.0.1:9/", region="eu-west-1", max_attempts=5, connect_timeout=3, read_timeout=7
    )
    lean = make_storage(spec).lean
    assert lean is not None
    assert (lean.host, lean.port, lean.base, lean.scheme) == ("127.0.0.1", 9, "", "http")
    assert (lean.max_attempts, lean.connect_timeout, lean.read_timeout) == (5, 3.0, 7.0)
    assert lean.signer.region == "eu-west-1"
    assert make_storage(ClientSpec(endpoint_url="http://127.0.0.1:9", lean_http=False)).lean is None
    aws = make_storage(ClientSpec(region="us-east-1")).lean  # AWS itself: per-bucket routes from botocore
    assert aws is not None and aws.routes is not None


def _client(**kw: Any) -> Any:
    config = kw.pop("config", Config(s3={"addressing_style": "path"}))
    return boto3.client("s3", region_name="us-east-1", config=config, **kw)


@pytest.mark.parametrize(
    "kw",
    [
        {
            "endpoint_url": "http://127.0.0.1:9",
            "config": Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}),
        },
        {"endpoint_url": "http://127.0.0.1:9", "config": Config(s3={"addressing_style": "virtual"})},
        {"endpoint_url": "http://127.0.0.1:9", "config": Config()},
        {
            "endpoint_url": "http://127.0.0.1:9",
            "config": Config(s3={"addressing_style": "path"}, proxies={"http": "http://proxy:3128"}),
        },
        {  # mutual TLS: the lean path would present no client certificate
            "endpoint_url": "https://127.0.0.1:9",
            "config": Config(s3={"addressing_style": "path"}, client_cert=("/nonexistent/c.pem", "/nonexistent/k.pem")),
        },
    ],
    ids=["anonymous", "virtual-hosted", "default-addressing", "proxy", "tls-client-certificate"],
)
def test_clients_the_lean_path_cannot_reproduce_keep_botocore(kw: dict[str, Any], no_proxy: None) -> None:
    assert LeanPath.for_client(_client(**kw)) is None


def test_a_proxy_in_the_environment_keeps_botocore(monkeypatch: pytest.MonkeyPatch, no_proxy: None) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert LeanPath.for_client(_client(endpoint_url="http://s3.example:9")) is None


def test_tls_settings_follow_the_client(no_proxy: None) -> None:
    import ssl

    unverified = LeanPath.for_client(_client(endpoint_url="https://127.0.0.1:9", verify=False))
    assert unverified is not None and unverified._ssl is not None
    assert unverified._ssl.verify_mode == ssl.CERT_NONE
    verified = LeanPath.for_client(_client(endpoint_url="https://127.0.0.1:9"))
    assert verified is not None and verified._ssl is not None
    assert verified._ssl.verify_mode == ssl.CERT_REQUIRED and verified._ssl.check_hostname


def test_retry_settings_follow_the_client(no_proxy: None) -> None:
    def attempts(retries: dict[str, Any] | None) -> int:
        config = Config(s3={"addressing_style": "path"}, retries=retries)  # type: ignore[arg-type]
        lean = LeanPath.for_client(_client(endpoint_url="http://127.0.0.1:9", config=config))
        assert lean is not None
        return lean.max_attempts

    assert attempts({"mode": "standard", "total_max_attempts": 8}) == 8
    assert attempts({"mode": "standard", "max_attempts": 4}) == 5  # max_attempts counts retries


def test_not_an_http_endpoint_is_refused() -> None:
    with pytest.raises(ValueError):
        LeanPath("ftp://127.0.0.1:9", SigV4(Creds(), "us-east-1"), max_attempts=1, connect_timeout=1, read_timeout=1)


def test_closed_by_peer_sees_a_server_close() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    try:
        assert not leanpath._closed_by_peer(client)
        accepted.close()
        deadline = time.monotonic() + 2
        while not leanpath._closed_by_peer(client) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert leanpath._closed_by_peer(client)
    finally:
        client.close()
        server.close()
