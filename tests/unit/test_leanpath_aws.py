"""The lean path on AWS endpoints: per-bucket routes learned from botocore, virtual-hosted, over verified TLS.

The store is the scripted stub of ``test_leanpath`` behind a TLS front (``s3seg_lab/tlsfront.py``) whose certificate
is issued by a throw-away CA for ``*.s3.<region>.amazonaws.com``; every ``*.amazonaws.com`` name resolves to the
front, for botocore and the lean path alike, so nothing leaves the machine. Oracles: botocore's own request for
the same call (captured in ``before-send``, never sent), botocore's ``S3SigV4Auth`` over what the lean path
sent, and botocore following the store's redirects for real.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
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
from s3seg.leanpath import BotocoreRoutes, LeanPath, UseBotocore, route_from_request
from s3seg.storage import ClientSpec, Storage, make_client, make_storage
from s3seg_lab.tlsfront import Pki, TlsFront, aws_dns, make_pki

COPIED = b'<?xml version="1.0"?><CopyObjectResult><ETag>&quot;abc&quot;</ETag></CopyObjectResult>'
PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Another CA's certificate for the same names: must never be accepted."""
    return make_pki(tmp_path_factory.mktemp("stranger"), label="someone else's CA")


class Aws:
    """A scripted S3 at AWS's host names, behind TLS; botocore clients that trust the test CA."""

    def __init__(self, stub: Stub, front: TlsFront, pki: Pki) -> None:
        self.stub, self.front, self.pki = stub, front, pki

    def client(self, region: str = "eu-west-1", token: str | None = None, **config: Any) -> Any:
        retries = config.pop("retries", {"mode": "standard", "total_max_attempts": 3})
        return boto3.client(
            "s3",
            region_name=region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            aws_session_token=token,
            config=Config(
                retries=retries,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=10,
                read_timeout=10,
                **config,
            ),
        )

    def lean(self, client: Any) -> LeanPath:
        lean = LeanPath.for_aws(client)
        assert lean is not None
        return lean


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CA_BUNDLE", pki.ca_file)  # how botocore (and so the lean path) trusts the test CA
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


def _serve(stub: Stub, pki: Pki) -> Iterator[Aws]:
    host, port = urlsplit(stub.endpoint).hostname, urlsplit(stub.endpoint).port
    assert host is not None and port is not None
    front = TlsFront(pki, (host, port))
    try:
        with aws_dns(front.port):
            yield Aws(stub, front, pki)
    finally:
        front.close()


@pytest.fixture
def aws(env: None, pki: Pki) -> Iterator[Aws]:
    with running_stub() as stub:
        stub.default = _default
        yield from _serve(stub, pki)


@pytest.fixture
def impostor(env: None, stranger: Pki) -> Iterator[Aws]:
    """The same host names, served with a certificate the client's CA bundle does not trust."""
    with running_stub() as stub:
        stub.default = _default
        yield from _serve(stub, stranger)


def _default(seen: Sent) -> Reply:
    if seen.method == "PUT":
        return Reply(200, COPIED)
    if seen.method == "POST":
        return Reply(200, b"<DeleteResult></DeleteResult>")
    if seen.method == "HEAD":
        return Reply(200, headers={"ETag": '"e"', "Content-Length": "3"})
    return Reply(204)


class Capture:
    """botocore's requests on ``client`` captured in before-send and answered there (never sent)."""

    def __init__(self, client: Any) -> None:
        self.sent: list[tuple[str, Sent]] = []
        client.meta.events.register("before-send.s3", self._answer)

    def _answer(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        if leanpath._PROBE_KEY in request.url:
            return None  # the lean path's probe: left to its own hook (answering it would keep botocore)
        parts = urlsplit(request.url)
        headers = {k.lower(): _text(v) for k, v in request.headers.items()}
        headers["host"] = parts.netloc
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sent.append(
            (f"{parts.scheme}://{parts.netloc}", Sent(request.method, target, headers, request.body or b""))
        )
        return AWSResponse(request.url, 200, {}, _Raw(_answer_for(event_name.rsplit(".", 1)[1])))


# -- the route: regional endpoint, addressing, TLS ------------------------------------------------------------
@pytest.mark.parametrize(
    ("region", "bucket", "netloc", "target"),
    [
        ("eu-west-1", "my-bucket", "my-bucket.s3.eu-west-1.amazonaws.com", "/k%20%2B/%C3%A9"),
        ("us-east-1", "my-bucket", "my-bucket.s3.amazonaws.com", "/k%20%2B/%C3%A9"),
        ("eu-west-1", "my.dotted.bucket", "s3.eu-west-1.amazonaws.com", "/my.dotted.bucket/k%20%2B/%C3%A9"),
    ],
    ids=["virtual-hosted", "us-east-1-global", "dotted-name-path-style"],
)
def test_requests_go_over_verified_tls_to_the_host_botocore_resolves(
    aws: Aws, region: str, bucket: str, netloc: str, target: str
) -> None:
    lean = aws.lean(aws.client(region))
    try:
        assert lean.head(bucket, "k +/é") is not None
    finally:
        lean.close()
    (seen,) = aws.stub.seen  # the probe was captured, never sent
    assert (seen.method, seen.target, seen.headers["host"]) == ("HEAD", target, netloc)
    assert aws.front.sni == [netloc.split(":")[0]]  # SNI carries the virtual host name
    assert seen.headers["authorization"].split("/")[2] == region
    assert seen.headers["authorization"] == signed_by_botocore(seen, f"https://{netloc}", Creds(), region)


KEYS = ["plain", "a b+c%2B?versionId=1", "😀/日本/é", "/lead//double~", "&<>\"'", "x" * 300]


@pytest.mark.parametrize("token", [None, TOKEN], ids=["keys", "session-token"])
@pytest.mark.parametrize(
    ("region", "bucket"), [("eu-central-1", "dst-bucket"), ("us-east-1", "dst-bucket"), ("eu-west-1", "dst.bucket")]
)
def test_virtual_hosted_requests_are_the_ones_botocore_sends(
    aws: Aws, token: str | None, region: str, bucket: str
) -> None:
    client = aws.client(region, token=token)
    lean = aws.lean(client)
    boto = Capture(client)
    try:
        for key in KEYS:
            calls: list[tuple[Any, Any]] = [
                (
                    lambda k=key: client.copy_object(
                        Bucket=bucket, Key=k, CopySource={"Bucket": "src.bucket-1", "Key": k},
                        MetadataDirective="COPY", TaggingDirective="COPY", CopySourceIfMatch='"e"', IfNoneMatch="*",
                        StorageClass="STANDARD_IA",
                    ),
                    lambda k=key: lean.copy(
                        "src.bucket-1", k, bucket, k, if_match='"e"', if_none_match=True, storage_class="STANDARD_IA"
                    ),
                ),
                (lambda k=key: client.head_object(Bucket=bucket, Key=k), lambda k=key: lean.head(bucket, k)),
                (
                    lambda k=key: client.delete_object(Bucket=bucket, Key=k, IfMatch='"e"'),
                    lambda k=key: lean.delete(bucket, k, if_match='"e"'),
                ),
            ]  # fmt: skip
            for theirs_call, ours_call in calls:
                theirs_call()
                endpoint, theirs = boto.sent[-1]
                with mock.patch.object(leanpath, "amz_now", lambda t=theirs: t.headers["x-amz-date"]):
                    ours_call()
                assert_same_request(aws.stub.seen[-1], theirs, endpoint)
        # DeleteObjects: botocore's body and checksum differ (CRC32); same target, and botocore's signer agrees.
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}], "Quiet": False})
        endpoint, theirs = boto.sent[-1]
        lean.delete_objects(bucket, [("a", None), ("b", '"e"')])
        sent = aws.stub.seen[-1]
        assert (sent.method, sent.target, sent.headers["host"]) == ("POST", theirs.target, theirs.headers["host"])
        assert sent.headers["authorization"] == signed_by_botocore(sent, endpoint, Creds(token=token), region)
    finally:
        lean.close()
    assert not any(leanpath._PROBE_KEY in s.target for s in aws.stub.seen)


LISTED = (
    b'<?xml version="1.0"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>'
    b"<IsTruncated>false</IsTruncated><EncodingType>url</EncodingType><Contents><Key>a+b%2Bc</Key>"
    b"<LastModified>2026-12-03T11:40:00.123Z</LastModified><ETag>&quot;e&quot;</ETag><Size>3</Size></Contents>"
    b"</ListBucketResult>"
)


@pytest.mark.parametrize("token", [None, TOKEN], ids=["keys", "session-token"])
@pytest.mark.parametrize(
    ("region", "bucket", "path"),
    [("eu-central-1", "dst-bucket", "/"), ("us-east-1", "dst-bucket", "/"), ("eu-west-1", "dst.bucket", "/dst.bucket")],
    ids=["virtual-hosted", "us-east-1-global", "dotted-name-path-style"],
)
def test_a_listing_request_is_the_one_botocore_sends(
    aws: Aws, token: str | None, region: str, bucket: str, path: str
) -> None:
    """The bucket's own path (``/`` virtual-hosted) with a real query string, signed in its canonical form:
    botocore's Authorization for the same call, byte for byte."""
    client = aws.client(region, token=token)
    lean = aws.lean(client)
    boto = Capture(client)
    cases = [
        {"Prefix": "", "MaxKeys": 1000},
        {"Prefix": "a b+c/%&é~*", "MaxKeys": 7, "Delimiter": "/", "StartAfter": "x y"},
        {"Prefix": "p/", "MaxKeys": 2, "ContinuationToken": "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="},
    ]
    try:
        for kwargs in cases:
            client.list_objects_v2(Bucket=bucket, **kwargs)
            endpoint, theirs = boto.sent[-1]
            aws.stub.script(Reply(200, LISTED))
            with mock.patch.object(leanpath, "amz_now", lambda t=theirs: t.headers["x-amz-date"]):
                page = lean.list_objects_v2(
                    bucket, kwargs["Prefix"], delimiter=kwargs.get("Delimiter", ""), max_keys=kwargs["MaxKeys"],
                    start_after=kwargs.get("StartAfter", ""), continuation_token=kwargs.get("ContinuationToken", ""),
                )  # fmt: skip
            assert [o.key for o in page.objects] == ["a b+c"]
            ours = aws.stub.seen[-1]
            their_path, _, their_query = theirs.target.partition("?")
            assert their_path == path
            assert ours.target == f"{path}?{leanpath.canonical_query(their_query)}"  # canonical order on the wire
            assert ours.headers["host"] == theirs.headers["host"] == urlsplit(endpoint).netloc
            assert ours.headers["authorization"] == theirs.headers["authorization"]  # byte for byte
            assert ours.headers["authorization"] == signed_by_botocore(ours, endpoint, Creds(token=token), region)
    finally:
        lean.close()


def test_a_certificate_from_another_ca_is_refused_not_accepted(impostor: Aws) -> None:
    client = impostor.client()
    lean = impostor.lean(client)
    with pytest.raises(UseBotocore) as info:
        lean.copy("b", "src", "b", "dst", if_match=None, if_none_match=True, storage_class="")
    assert info.value.suspect  # botocore gives the verdict (with the same CA bundle: refused too)
    storage = Storage(client, lean)
    with pytest.raises(StorageError) as failed:
        storage.copy("b", "src", "b", "dst", if_match=None, if_none_match=True, storage_class="")
    assert failed.value.retryable
    assert impostor.stub.seen == []  # nothing reached the store, the lean way or botocore's
    assert impostor.front.failed_handshakes >= 2 and impostor.front.handshakes == 0
    assert lean.enabled  # botocore failed too: nothing said against the lean path


def test_verify_false_is_honoured_as_botocore_was_told(impostor: Aws) -> None:
    client = impostor.client()
    client._endpoint.http_session._verify = False  # what verify=False gives botocore's session
    lean = impostor.lean(client)
    assert lean._ssl is not None and lean._ssl.verify_mode == ssl.CERT_NONE
    try:
        assert lean.head("b", "k") is not None
    finally:
        lean.close()
    assert len(impostor.stub.seen) == 1


def test_the_ca_bundle_is_botocores(aws: Aws, pki: Pki, tmp_path: Path) -> None:
    lean = aws.lean(aws.client())
    assert lean._ssl is not None and lean._ssl.verify_mode == ssl.CERT_REQUIRED and lean._ssl.check_hostname
    ca_names = {c["subject"] for c in lean._ssl.get_ca_certs()}
    assert ca_names == {((("commonName", "s3seg test CA"),),)}  # AWS_CA_BUNDLE, as botocore loaded it
    default = leanpath.tls_context(True)  # verify=True: botocore's default bundle (certifi's)
    assert default.verify_mode == ssl.CERT_REQUIRED and len(default.get_ca_certs()) > 10


# -- hand-backs --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bucket",
    [
        "arn:aws:s3:eu-west-1:123456789012:accesspoint/myap",
        "arn:aws:s3-object-lambda:eu-west-1:123456789012:accesspoint/olap",
        "mybucket--euw1-az1--x-s3",
        "myap-abcdefgh1234567890-s3alias",
        "olap-alias-abcdefgh--ol-s3",
    ],
    ids=["access-point-arn", "object-lambda-arn", "s3-express-directory-bucket", "access-point-alias", "ol-alias"],
)
def test_buckets_botocore_treats_specially_stay_with_botocore(aws: Aws, bucket: str) -> None:
    client = aws.client()
    lean = aws.lean(client)
    for call in (
        lambda: lean.head(bucket, "k"),
        lambda: lean.delete(bucket, "k", if_match=None),
        lambda: lean.delete_objects(bucket, [("k", None)]),
        lambda: lean.copy("plain-src", "k", bucket, "k", if_match=None, if_none_match=False, storage_class=""),
        lambda: lean.copy(bucket, "k", "plain-dst", "k", if_match=None, if_none_match=False, storage_class=""),
    ):
        with pytest.raises(UseBotocore) as info:
            call()
        assert not info.value.suspect and not info.value.maybe_applied
    assert aws.stub.seen == []
    assert lean.enabled


@pytest.mark.parametrize(
    "config",
    [
        {"use_fips_endpoint": True},
        {"use_dualstack_endpoint": True},
        {"s3": {"use_accelerate_endpoint": True}},
        {"s3": {"use_dualstack_endpoint": True}},
        {"proxies": {"https": "http://proxy.invalid:3128"}},
        {"client_cert": ("/nonexistent/c.pem", "/nonexistent/k.pem")},
        {"retries": {"mode": "nonsense"}},
    ],
    ids=["fips", "dual-stack", "accelerate", "s3-dual-stack", "proxy", "mutual-tls", "unknown-retry-mode"],
)
def test_client_settings_the_lean_path_does_not_reproduce_keep_botocore(aws: Aws, config: dict[str, Any]) -> None:
    if config.get("retries", {}).get("mode") == "nonsense":
        client = aws.client()
        client.meta.config.retries = {"mode": "nonsense"}  # botocore itself refuses it at construction
    else:
        client = aws.client(**config)
    assert LeanPath.for_aws(client) is None


def test_an_https_proxy_in_the_environment_keeps_botocore(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert LeanPath.for_aws(aws.client()) is None


@pytest.mark.parametrize(
    "config",
    [{"use_fips_endpoint": True}, {"use_dualstack_endpoint": True}, {"s3": {"use_accelerate_endpoint": True}}],
    ids=["fips", "dual-stack", "accelerate"],
)
def test_hosts_other_than_the_plain_regional_endpoint_are_not_recognised(aws: Aws, config: dict[str, Any]) -> None:
    # Belt and braces under the settings check: the host shape alone refuses them too.
    client = aws.client(**config)
    routes = BotocoreRoutes(client, client._request_signer._credentials)
    assert routes.route("my-bucket") is None
    assert aws.stub.seen == []


def test_a_header_a_users_hook_adds_keeps_the_bucket_with_botocore(aws: Aws) -> None:
    client = aws.client()
    client.meta.events.register(
        "before-sign.s3", lambda request, **_: request.headers.__setitem__("x-amz-request-payer", "requester")
    )
    lean = aws.lean(client)
    with pytest.raises(UseBotocore):
        lean.head("my-bucket", "k")
    assert aws.stub.seen == []


def test_a_signature_this_path_cannot_reproduce_keeps_the_bucket_with_botocore(aws: Aws) -> None:
    client = aws.client()
    with mock.patch.object(leanpath.SigV4, "sign", lambda self, *a, **k: {"Authorization": "different"}):
        routes = BotocoreRoutes(client, client._request_signer._credentials)
        assert routes.route("my-bucket") is None


def test_route_from_request_reads_region_service_and_addressing(aws: Aws) -> None:
    client = aws.client("ap-southeast-2")
    creds = client._request_signer._credentials
    captured: list[Any] = []

    def grab(request: Any, **_: Any) -> AWSResponse:
        captured.append(request)
        return AWSResponse(request.url, 200, {}, _Raw(b""))

    client.meta.events.register("before-send.s3", grab)
    client.head_object(Bucket="bkt", Key=leanpath._PROBE_KEY)
    route, why = route_from_request(captured[-1], "bkt", creds)
    assert why == "" and route is not None
    assert (route.host, route.port, route.netloc, route.prefix, route.bucket_path) == (
        "bkt.s3.ap-southeast-2.amazonaws.com", 443, "bkt.s3.ap-southeast-2.amazonaws.com", "", "/",
    )  # fmt: skip
    assert (route.signer.region, route.signer.service) == ("ap-southeast-2", "s3")
    route, why = route_from_request(captured[-1], "other-bucket", creds)  # not the bucket it was built for
    assert route is None and "unrecognised" in why


# -- redirects and region errors -----------------------------------------------------------------------------------
def test_a_redirect_is_followed_by_botocore_and_the_route_learned_again(aws: Aws) -> None:
    client = aws.client("eu-west-1")
    lean = aws.lean(client)
    storage = Storage(client, lean)
    region_hint = {"x-amz-bucket-region": "us-west-2"}
    aws.stub.script(
        Reply(301, error_xml("PermanentRedirect"), headers=region_hint),  # the lean attempt (eu-west-1)
        Reply(301, error_xml("PermanentRedirect"), headers=region_hint),  # botocore's first attempt
        Reply(200, COPIED),  # botocore, redirected to us-west-2
    )
    try:
        etag = storage.copy("elsewhere", "a", "elsewhere", "b", if_match=None, if_none_match=True, storage_class="")
        assert etag == '"abc"'
        hosts = [s.headers["host"] for s in aws.stub.seen]
        assert hosts == ["elsewhere.s3.eu-west-1.amazonaws.com"] * 2 + ["elsewhere.s3.us-west-2.amazonaws.com"]
        # Next request: the route is learned again, from botocore's cache of the bucket's region.
        storage.delete("elsewhere", "a")
        last = aws.stub.seen[-1]
        assert (last.method, last.headers["host"]) == ("DELETE", "elsewhere.s3.us-west-2.amazonaws.com")
        assert "/us-west-2/s3/" in last.headers["authorization"]
        assert last.headers["user-agent"].endswith(" lean")  # the lean path sent it
    finally:
        lean.close()
    assert lean.enabled


def test_a_bodyless_region_error_on_head_is_handed_to_botocore(aws: Aws) -> None:
    lean = aws.lean(aws.client("eu-west-1"))
    aws.stub.script(Reply(400, headers={"x-amz-bucket-region": "us-west-2"}))
    try:
        with pytest.raises(UseBotocore) as info:
            lean.head("bkt", "k")
    finally:
        lean.close()
    assert not info.value.suspect


def test_redirects_from_the_endpoint_botocore_still_resolves_pin_the_bucket_to_botocore(aws: Aws) -> None:
    lean = aws.lean(aws.client("eu-west-1"))
    moved = Reply(307, headers={"Location": "https://bkt.s3.eu-west-1.amazonaws.com/k"})
    aws.stub.script(moved, moved)
    try:
        for _ in range(2):  # learned again after the first: another thread may have raced botocore's redirect
            with pytest.raises(UseBotocore):
                lean.delete("bkt", "k", if_match=None)
        with pytest.raises(UseBotocore):  # the same route, redirected twice: botocore keeps this bucket
            lean.delete("bkt", "k", if_match=None)
        assert lean.head("other", "k") is not None  # other buckets keep the lean path
    finally:
        lean.close()
    assert [s.headers["host"].split(".")[0] for s in aws.stub.seen] == ["bkt", "bkt", "other"]


def test_a_region_hint_from_an_explicit_endpoint_store_is_not_a_redirect() -> None:
    # Some S3-compatible stores name their own region on every answer: that is no reason to leave the lean path.
    with running_stub() as stub:
        lean = LeanPath(stub.endpoint, leanpath.SigV4(Creds(), "eu-west-1"), max_attempts=1, connect_timeout=10,
                        read_timeout=10)  # fmt: skip
        stub.script(Reply(404, error_xml("NoSuchKey"), headers={"x-amz-bucket-region": "us-east-1"}))
        try:
            assert lean.head("b", "k") is None
        finally:
            lean.close()


# -- retry modes -------------------------------------------------------------------------------------------------
SLOWDOWN = Reply(503, error_xml("SlowDown", "Please reduce your request rate."))


def test_legacy_mode_backs_off_uncapped_with_its_own_default_attempts(aws: Aws) -> None:
    lean = aws.lean(aws.client(retries={"mode": "legacy"}))
    assert (lean.retry_mode, lean.max_attempts, lean.max_backoff, lean.limiter) == ("legacy", 5, float("inf"), None)
    sleeps: list[float] = []
    aws.stub.script(SLOWDOWN, SLOWDOWN, SLOWDOWN, SLOWDOWN, Reply(204))
    with (
        mock.patch.object(leanpath.time, "sleep", sleeps.append),
        mock.patch.object(leanpath.random, "random", lambda: 1.0),
    ):
        try:
            lean.delete("b", "k", if_match=None)  # the probe works under legacy retries too
        finally:
            lean.close()
    assert sleeps == [1.0, 2.0, 4.0, 8.0]  # rand * 2 ** (n - 1), 5 attempts
    standard = aws.lean(aws.client(retries={"mode": "standard"}))
    assert (standard.max_attempts, standard.max_backoff) == (3, 20.0)


def test_adaptive_mode_rate_limits_the_lean_path_with_botocores_token_bucket(aws: Aws) -> None:
    lean = aws.lean(aws.client(retries={"mode": "adaptive", "total_max_attempts": 4}))
    limiter = lean.limiter
    assert limiter is not None and not limiter._enabled  # no limit until the first throttling answer
    sends: list[None] = []
    real = limiter.on_sending_request
    limiter.on_sending_request = lambda request: (sends.append(None), real(request))
    aws.stub.script(SLOWDOWN, Reply(200, COPIED))
    with mock.patch.object(leanpath.time, "sleep", lambda s: None):
        try:
            assert lean.copy("b", "s", "b", "d", if_match=None, if_none_match=True, storage_class="") == '"abc"'
        finally:
            lean.close()
    assert len(sends) == 2  # every attempt asks the token bucket
    assert limiter._enabled  # throttled once: sending is now paced by the bucket
    assert limiter._token_bucket.max_rate < 10  # CUBIC cut the rate


def test_the_throttling_detector_uses_botocores_codes() -> None:
    detector = leanpath._ThrottlingDetector()
    assert detector.is_throttling_error(code="SlowDown", status=503)
    assert detector.is_throttling_error(code="", status=429)
    assert not detector.is_throttling_error(code="InternalError", status=500)
    assert not detector.is_throttling_error(code="", status=0)


# -- make_storage wiring ---------------------------------------------------------------------------------------------
def test_make_storage_gives_aws_per_bucket_routes_and_honours_botocore_only(env: None) -> None:
    lean = make_storage(ClientSpec(region="eu-west-1", retry_mode="adaptive", max_attempts=6)).lean
    assert lean is not None and lean.routes is not None
    assert (lean.retry_mode, lean.max_attempts, lean.limiter is not None) == ("adaptive", 6, True)
    assert make_storage(ClientSpec(region="eu-west-1", lean_http=False)).lean is None
    client = make_client(ClientSpec(region="eu-west-1"))
    assert Storage(client).lean is None


def test_under_an_in_process_mock_every_bucket_stays_with_botocore(env: None) -> None:
    # moto's mock_aws answers in before-send, before the probe's own hook: nothing may go around it to the network.
    from moto import mock_aws

    with mock_aws():
        client = make_client(ClientSpec(region="us-east-1"))
        client.create_bucket(Bucket="mocked-bucket")
        client.put_object(Bucket="mocked-bucket", Key="a", Body=b"x")
        storage = make_storage(ClientSpec(region="us-east-1"), client)
        assert storage.lean is not None and storage.lean.routes is not None
        storage.copy("mocked-bucket", "a", "mocked-bucket", "b", if_match=None, if_none_match=True, storage_class="")
        assert storage.lean.routes.route("mocked-bucket") is None
        assert client.get_object(Bucket="mocked-bucket", Key="b")["Body"].read() == b"x"
