"""ListObjectsV2 on the lean path: the request botocore sends, and the page botocore's path reads.

Oracles, none of them the code under test: botocore's own client for the same call (the request captured in
``before-send``, never sent; the same XML answer parsed by botocore and turned into a page by
``storage._page``, what ``Storage.list_pages`` yields without the lean path), botocore's ``S3SigV4Auth`` over
the request the lean path sent, and the scripted stub of ``leanstub`` for retries and hand-backs.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from leanstub import ACCESS_KEY, SECRET_KEY, TOKEN, Creds, Reply, Sent, Stub, _Raw, _text, error_xml, running_stub
from leanstub import signed_by_botocore as botocore_signature

import s3seg.leanpath as leanpath
from s3seg.errors import StorageError
from s3seg.leanpath import (
    LeanPath,
    MalformedListing,
    SigV4,
    canonical_query,
    list_query,
    parse_list_result,
    parse_timestamp,
)
from s3seg.objects import Listed, ListPage
from s3seg.storage import Storage, _page

NOWHERE = "http://127.0.0.1:9"  # the discard port: these botocore clients never send (before-send answers)
NS = "http://s3.amazonaws.com/doc/2006-03-01/"
UNSIGNED = {"user-agent", "amz-sdk-invocation-id", "amz-sdk-request", "content-length", "host"}


class Botocore:
    """A botocore client (with s3seg's timestamp parser, as ``make_client`` builds it) whose requests are
    recorded in ``before-send`` and answered there with ``answers`` (nothing is sent)."""

    def __init__(self, endpoint: str = NOWHERE, region: str = "us-east-1", token: str | None = None) -> None:
        session = boto3.session.Session()
        session._session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
        self.client = session.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            aws_session_token=token,
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "total_max_attempts": 1}),
        )
        self.client.meta.events.register("before-send.s3", self._answer)
        self.answers: list[Reply] = []
        self.sent: list[Sent] = []

    def _answer(self, request: Any, **_: Any) -> AWSResponse:
        parts = urlsplit(request.url)
        headers = {k.lower(): _text(v) for k, v in request.headers.items()}
        self.sent.append(Sent(request.method, f"{parts.path}?{parts.query}", headers, b""))
        reply = self.answers.pop(0) if self.answers else Reply(200, page_xml([]))
        return AWSResponse(request.url, reply.status, reply.headers, _Raw(reply.body))

    def page(self, body: bytes) -> ListPage:
        """What ``Storage.list_pages`` reads from ``body`` through botocore."""
        self.answers.append(Reply(200, body))
        return _page(self.client.list_objects_v2(Bucket="b", Prefix="", MaxKeys=1000))


@functools.cache
def _botocore() -> Botocore:
    return Botocore()  # one client for the module (building one costs ~100 ms)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def page_xml(
    objects: list[tuple[str, int, str, str | None, str]],
    *,
    encode: Any = quote_plus,
    encoding_type: bool = True,
    truncated: str = "false",
    token: str | None = None,
    prefixes: tuple[str, ...] = (),
    ns: str = f' xmlns="{NS}"',
    tag: str = "",
) -> bytes:
    """A ListBucketResult: (key, size, etag, storage class or None, LastModified) per object; ``tag``: a
    namespace prefix for every element (``s3:``)."""

    def el(name: str, text: str) -> str:
        return f"<{tag}{name}>{text}</{tag}{name}>"

    def enc(key: str) -> str:
        return _esc(encode(key, safe="/") if encoding_type else key)

    parts = [f"<?xml version='1.0' encoding='UTF-8'?>\n<{tag}ListBucketResult{ns}>", el("Name", "b"), el("Prefix", "")]
    parts.append(el("KeyCount", str(len(objects))) + el("MaxKeys", "1000") + el("IsTruncated", truncated))
    if encoding_type:
        parts.append(el("EncodingType", "url"))
    for key, size, etag, storage_class, modified in objects:
        body = el("Key", enc(key)) + el("LastModified", modified) + el("ETag", _esc(etag)) + el("Size", str(size))
        if storage_class is not None:
            body += el("StorageClass", storage_class)
        parts.append(el("Contents", body))
    parts += [el("CommonPrefixes", el("Prefix", enc(p))) for p in prefixes]
    if token is not None:
        parts.append(el("NextContinuationToken", _esc(token)))
    parts.append(f"</{tag}ListBucketResult>")
    return "".join(parts).encode()


# -- the page: what botocore's path reads from the same answer -------------------------------------------------
ODD_KEYS = ["plain", "sp ace", "a+b", "a%2Bb", "100%", "&amp;", "<tag>", "é日本😀", "\U0010fffd", "x/y/z", "~*'()"]
STAMPS = ["2026-12-03T11:40:00.123Z", "2026-12-03T11:40:00Z", "2026-12-03T11:40:00.123456Z", "2024-02-29T23:59:59.9Z"]
NAMESPACES = [f' xmlns="{NS}"', ' xmlns="http://s3.amazonaws.com/doc/2006-03-01"', ""]


@pytest.mark.parametrize("ns", NAMESPACES, ids=["aws", "moto-no-slash", "none"])
@pytest.mark.parametrize("encode", [quote_plus, quote], ids=["space-as-plus", "space-as-%20"])
def test_a_page_reads_as_botocores_whatever_the_namespace_and_url_encoding(ns: str, encode: Any) -> None:
    objects = [(k, i, f'"e{i}"', ["STANDARD", None, "GLACIER"][i % 3], STAMPS[i % 4]) for i, k in enumerate(ODD_KEYS)]
    body = page_xml(objects, encode=encode, ns=ns, truncated="true", token="tok+/=", prefixes=("p/", "q r/"))
    ours = parse_list_result(body)
    assert ours == _botocore().page(body)
    assert [o.key for o in ours.objects] == ODD_KEYS  # decoded, CommonPrefixes dropped
    assert [o.storage_class for o in ours.objects][:3] == ["STANDARD", "STANDARD", "GLACIER"]  # absent: STANDARD
    assert ours.objects[0].last_modified == "2026-12-03T11:40:00.123000+00:00"
    assert ours.objects[1].last_modified == "2026-12-03T11:40:00+00:00"
    assert (ours.truncated, ours.next_token) == (True, "tok+/=")


def test_prefixed_namespaces_an_empty_page_and_an_unencoded_answer_read_as_botocores() -> None:
    prefixed = page_xml([("a b", 1, "e", None, STAMPS[0])], ns=f' xmlns:s3="{NS}"', tag="s3:")
    assert parse_list_result(prefixed) == _botocore().page(prefixed)
    assert parse_list_result(prefixed).objects[0].etag == '"e"'  # quoted, as list_pages quotes botocore's
    empty = page_xml([])
    assert parse_list_result(empty) == _botocore().page(empty) == ListPage(objects=[], truncated=False, next_token="")
    # A store that ignores encoding-type answers raw keys and no EncodingType: neither path decodes them.
    raw = page_xml([("a+b%20c", 1, "e", None, STAMPS[0])], encoding_type=False)
    assert parse_list_result(raw) == _botocore().page(raw)
    assert parse_list_result(raw).objects[0].key == "a+b%20c"


xml_key = st.text(st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="\ufffe\uffff"), min_size=1)
stamp = st.builds(
    lambda s, frac: f"2026-{s % 12 + 1:02d}-{s % 28 + 1:02d}T{s % 24:02d}:{s % 60:02d}:{s % 59:02d}{frac}Z",
    st.integers(0, 10_000),
    st.sampled_from(["", ".0", ".123", ".999999", ".5"]),
)
rows = st.lists(
    st.tuples(xml_key, st.integers(0, 2**53), st.sampled_from(['"x"', "W/\"y\"", "unquoted-3"]),
              st.sampled_from([None, "STANDARD", "STANDARD_IA", ""]), stamp),
    max_size=12,
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(objects=[(" +%2B&<>\"'\t", 0, '"x"', "", "2026-01-01T00:00:00Z")], truncated="true", token="t")
@given(
    objects=rows,
    truncated=st.sampled_from(["true", "false", "True"]),
    token=st.one_of(st.none(), st.just(""), st.text(min_size=1, alphabet="ab+/=")),
)
def test_any_page_reads_as_botocores(
    objects: list[tuple[str, int, str, str | None, str]], truncated: str, token: str | None
) -> None:
    body = page_xml(objects, truncated=truncated, token=token)
    assert parse_list_result(body) == _botocore().page(body)


MALFORMED = {
    "not-xml": b"<html>oops",
    "cut-short": page_xml([("a", 1, "e", None, STAMPS[0]), ("b", 2, "e", None, STAMPS[0])])[:-60],
    "empty": b"",
    "error-root": error_xml("InternalError", "in a 200"),
    "no-key": page_xml([("a", 1, "e", None, STAMPS[0])]).replace(b"<Key>a</Key>", b""),
    "no-size": page_xml([("a", 1, "e", None, STAMPS[0])]).replace(b"<Size>1</Size>", b""),
    "size-not-a-number": page_xml([("a", 1, "e", None, STAMPS[0])]).replace(b"<Size>1</Size>", b"<Size>x</Size>"),
    "bad-time": page_xml([("a", 1, "e", None, "yesterday, maybe")]),
    "doctype": b'<!DOCTYPE l [<!ENTITY e "k">]><ListBucketResult><Contents><Key>&e;</Key><Size>1</Size><ETag>e'
    b"</ETag><LastModified>2026-01-01T00:00:00Z</LastModified></Contents></ListBucketResult>",
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_answer_is_never_a_page(body: bytes) -> None:
    with pytest.raises(MalformedListing):
        parse_list_result(body)


# -- the request: what botocore sends -------------------------------------------------------------------------------
def test_the_canonical_query_sorts_by_name_then_value_and_gives_sub_resources_a_value() -> None:
    assert canonical_query("") == ""
    assert canonical_query("delete") == "delete="
    assert canonical_query("b=2&a-b=1&a=3") == "a=3&a-b=1&b=2"  # "a" before "a-b", as botocore sorts pairs


params = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@example(
    prefix="a b+c/%&é~*", delimiter="/", max_keys=7, start_after="x y", token="tok/+=", tok=TOKEN, region="eu-west-3"
)
@given(
    prefix=params,
    delimiter=st.sampled_from(["", "/", "+", "%", "é"]),
    max_keys=st.integers(1, 1000),
    start_after=params,
    token=st.sampled_from(["", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=", "a b"]),
    tok=st.sampled_from([None, TOKEN]),
    region=st.sampled_from(["us-east-1", "eu-west-3"]),
)
def test_a_listing_request_is_the_one_botocore_sends(
    wire: Stub, prefix: str, delimiter: str, max_keys: int, start_after: str, token: str, tok: str | None, region: str
) -> None:
    boto = _capture(wire.endpoint, region, tok)
    kwargs: dict[str, Any] = {"Bucket": "bkt", "Prefix": prefix, "MaxKeys": max_keys}
    if delimiter:
        kwargs["Delimiter"] = delimiter
    if start_after:
        kwargs["StartAfter"] = start_after
    if token:
        kwargs["ContinuationToken"] = token
    boto.client.list_objects_v2(**kwargs)
    theirs = boto.sent[-1]
    lean = _lean(wire.endpoint, region, tok)
    with mock.patch.object(leanpath, "amz_now", lambda: theirs.headers["x-amz-date"]):
        lean.list_objects_v2(
            "bkt", prefix, delimiter=delimiter, max_keys=max_keys, start_after=start_after, continuation_token=token
        )
    ours = wire.seen[-1]
    path, _, query = ours.target.partition("?")
    their_path, _, their_query = theirs.target.partition("?")
    assert (ours.method, path) == (theirs.method, their_path) == ("GET", "/bkt")
    assert query == canonical_query(their_query)  # the same parameters, sent in canonical order
    assert parse_qsl(query, keep_blank_values=True) == sorted(parse_qsl(their_query, keep_blank_values=True))
    assert {k: v for k, v in ours.headers.items() if k not in UNSIGNED} == {
        k: v for k, v in theirs.headers.items() if k not in UNSIGNED
    }  # Authorization included: botocore signed the same canonical request
    assert ours.headers["authorization"] == botocore_signature(ours, wire.endpoint, Creds(token=tok), region)


@functools.cache
def _capture(endpoint: str, region: str, token: str | None) -> Botocore:
    return Botocore(endpoint, region, token)


@functools.cache
def _lean(endpoint: str, region: str, token: str | None) -> LeanPath:
    return LeanPath(endpoint, SigV4(Creds(token=token), region), max_attempts=1, connect_timeout=5, read_timeout=5)


@pytest.fixture(scope="module")
def wire() -> Iterator[Stub]:
    with running_stub() as stub:
        stub.default = lambda seen: Reply(200, page_xml([]))
        yield stub
        for lean in [_lean(stub.endpoint, r, t) for r in ("us-east-1", "eu-west-3") for t in (None, TOKEN)]:
            lean.close()


# -- on the wire: retries and hand-backs ------------------------------------------------------------------------
class _NoSleep:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stub]:
    monkeypatch.setattr(leanpath, "time", _NoSleep())
    with running_stub() as s:
        yield s


@pytest.fixture
def lean(stub: Stub) -> Iterator[LeanPath]:
    path = LeanPath(stub.endpoint, SigV4(Creds(), "us-east-1"), max_attempts=3, connect_timeout=5, read_timeout=5)
    yield path
    path.close()


PAGE = page_xml([("k 1", 1, '"e"', None, STAMPS[0])])


def test_a_malformed_answer_is_retried_and_the_whole_page_returned(stub: Stub, lean: LeanPath) -> None:
    stub.script(Reply(200, MALFORMED["cut-short"]), Reply(200, PAGE))
    page = lean.list_objects_v2("b", "", max_keys=10)
    assert [o.key for o in page.objects] == ["k 1"]
    assert len(stub.seen) == 2


def test_malformed_answers_on_every_attempt_are_a_retryable_error_not_a_short_page(stub: Stub, lean: LeanPath) -> None:
    stub.script(*[Reply(200, MALFORMED["not-xml"])] * 3)
    with pytest.raises(StorageError) as info:
        lean.list_objects_v2("b", "p/")
    assert (info.value.op, info.value.code, info.value.retryable) == ("ListObjectsV2", "MalformedResponse", True)
    assert len(stub.seen) == 3


def test_listing_errors_are_botocores_codes(stub: Stub, lean: LeanPath) -> None:
    stub.script(Reply(404, error_xml("NoSuchBucket", "The specified bucket does not exist")))
    with pytest.raises(StorageError) as info:
        lean.list_objects_v2("gone", "")
    assert (info.value.code, info.value.status, info.value.retryable) == ("NoSuchBucket", 404, False)
    stub.script(Reply(503, error_xml("SlowDown")), Reply(200, PAGE))
    assert len(lean.list_objects_v2("b", "").objects) == 1  # retried


def test_a_page_handed_back_is_asked_of_botocore_with_the_same_token(stub: Stub, lean: LeanPath) -> None:
    boto = Botocore()
    one = page_xml([("a", 1, "e", None, STAMPS[0])], truncated="true", token="t1")
    two = page_xml([("b", 2, "e", None, STAMPS[1])], truncated="true", token="t2")
    three = page_xml([("c", 3, "e", None, STAMPS[2])])
    stub.script(Reply(200, one), Reply(301, error_xml("PermanentRedirect")), Reply(200, three))
    boto.answers.append(Reply(200, two))
    pages = list(Storage(boto.client, lean).list_pages("b", "", page_size=1, start_after="0"))
    assert [[o.key for o in p] for p in pages] == [["a"], ["b"], ["c"]]
    lean_queries = [dict(parse_qsl(urlsplit(s.target).query)) for s in stub.seen]
    assert lean_queries[0]["start-after"] == "0" and "continuation-token" not in lean_queries[0]
    assert [q.get("continuation-token") for q in lean_queries] == [None, "t1", "t2"]
    assert "start-after" not in lean_queries[1] and "start-after" not in lean_queries[2]
    (handed,) = boto.sent
    assert dict(parse_qsl(urlsplit(handed.target).query))["continuation-token"] == "t1"
    assert "start-after" not in handed.target
    assert lean.enabled


def test_a_turned_off_lean_path_lists_through_botocore(stub: Stub, lean: LeanPath) -> None:
    boto = Botocore()
    lean.disable("test")
    boto.answers.append(Reply(200, PAGE))
    assert [o.key for p in Storage(boto.client, lean).list_pages("b", "") for o in p] == ["k 1"]
    assert stub.seen == []
    assert len(boto.sent) == 1


def test_list_query_keeps_an_empty_prefix_and_always_asks_for_url_encoding() -> None:
    q = list_query("", delimiter="", max_keys=1000, start_after="", continuation_token="")
    assert q == "encoding-type=url&list-type=2&max-keys=1000&prefix="
    q = list_query("a b/é~*", delimiter="/", max_keys=7, start_after="+", continuation_token="t/=")
    assert q == (
        "continuation-token=t%2F%3D&delimiter=%2F&encoding-type=url&list-type=2&max-keys=7"
        "&prefix=a%20b%2F%C3%A9~%2A&start-after=%2B"
    )


@pytest.mark.parametrize("token", ["", "same"], ids=["no token", "the same token again"])
def test_a_truncated_page_without_a_new_token_is_refused_not_taken_as_the_end(token: str) -> None:
    """A store that says "more" but gives no way on: stopping would plan silently without the remaining keys."""
    first = [Listed(key="p/a", size=1, etag='"e"', storage_class="STANDARD", last_modified="2026-01-01T00:00:00")]
    pages = iter([ListPage(objects=first, truncated=True, next_token="same"),
                  ListPage(objects=[], truncated=True, next_token=token)])  # fmt: skip
    storage = Storage(mock.MagicMock(), None)
    with mock.patch.object(Storage, "_request", lambda self, *a, **k: next(pages)):
        got = storage.list_pages("b", "p/")
        assert next(got) == first
        assert next(got) == []  # the page itself is good: its objects are yielded ...
        with pytest.raises(StorageError, match="truncated but gave no new continuation token"):
            next(got)  # ... but the listing cannot go on, and does not pretend it ended
