"""What ``s3seg.leanpath`` relies on in botocore, pinned: a botocore upgrade that changes any of it fails here.

The lean path reads private attributes and mirrors botocore behaviour. If one of these tests fails after an
upgrade, do not relax the test: re-check what the lean path does with that attribute or behaviour, fix
``leanpath`` (or hand that case to botocore), then update the pin. The versions this was verified against are at
the end.
"""

from __future__ import annotations

import inspect
import ssl
from typing import Any

import boto3
import botocore
import botocore.auth
import botocore.credentials
import botocore.httpsession
import pytest
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.retries import adaptive, bucket, standard, throttling

import s3seg.leanpath as leanpath
from s3seg import s3errors
from s3seg.leanpath import SigV4

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def _client(**config: Any) -> Any:
    return boto3.session.Session().client(  # a new session: it reads the environment afresh
        "s3",
        region_name="eu-west-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(**config),
    )


# -- private attributes read by LeanPath.for_client / for_aws / BotocoreRoutes -----------------------------------
def test_the_request_signer_holds_the_clients_credentials() -> None:
    client = _client()
    creds = client._request_signer._credentials
    assert isinstance(creds, botocore.credentials.Credentials)
    frozen = creds.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (ACCESS_KEY, SECRET_KEY, None)


def test_the_http_session_holds_verify_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # botocore falls back to it, too
    assert _client()._endpoint.http_session._verify is True
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/requests/ca.pem")
    assert _client()._endpoint.http_session._verify == "/requests/ca.pem"
    monkeypatch.setenv("AWS_CA_BUNDLE", "/env/ca.pem")  # the session's ca_bundle: what the lean path then loads
    assert _client()._endpoint.http_session._verify == "/env/ca.pem"
    unverified = boto3.client(
        "s3", region_name="eu-west-1", verify=False, aws_access_key_id="a", aws_secret_access_key="b"
    )
    assert unverified._endpoint.http_session._verify is False
    bundle = boto3.client(
        "s3", region_name="eu-west-1", verify="/x/ca.pem", aws_access_key_id="a", aws_secret_access_key="b"
    )
    assert bundle._endpoint.http_session._verify == "/x/ca.pem"


def test_get_cert_path_is_botocores_bundle_choice() -> None:
    assert botocore.httpsession.get_cert_path("/x/ca.pem") == "/x/ca.pem"
    default = botocore.httpsession.get_cert_path(True)
    assert isinstance(default, str) and default.endswith(".pem")
    assert leanpath.tls_context(True).verify_mode == ssl.CERT_REQUIRED


def test_config_fields_the_lean_path_reads() -> None:
    config = _client(
        retries={"mode": "adaptive", "total_max_attempts": 7}, connect_timeout=3, read_timeout=9
    ).meta.config
    for name in (
        "signature_version", "proxies", "client_cert", "s3", "retries", "connect_timeout", "read_timeout",
        "use_fips_endpoint", "use_dualstack_endpoint",
    ):  # fmt: skip
        assert hasattr(config, name), name
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 7}
    assert (config.connect_timeout, config.read_timeout) == (3, 9)
    # max_attempts counts retries; botocore turns it into total_max_attempts (what _retry_settings reads first)
    assert _client(retries={"max_attempts": 4}).meta.config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert _client(use_fips_endpoint=True).meta.config.use_fips_endpoint is True


def test_retry_modes_and_their_defaults() -> None:
    assert standard.DEFAULT_MAX_ATTEMPTS == 3
    assert standard.ExponentialBackoff._MAX_BACKOFF == 20
    # legacy: 5 attempts for S3 unless configured (botocore's _retry.json), backoff rand * 2 ** (n - 1), no cap.
    loader = botocore.session.get_session().get_component("data_loader")
    assert loader.load_data("_retry")["retry"]["__default__"]["max_attempts"] == 5
    src = inspect.getsource(botocore.retryhandler.delay_exponential)
    assert "base * (growth_factor ** (attempts - 1))" in src
    for mode in ("standard", "legacy", "adaptive"):
        assert _client(retries={"mode": mode}).meta.config.retries["mode"] == mode


class _Raw:
    def stream(self, **_: Any) -> Any:
        yield b""


def test_every_before_send_hook_runs_and_the_first_answer_is_used() -> None:
    # What _capture relies on: it is called even after an earlier handler answered, and that answer wins.
    client = _client()
    order: list[str] = []
    client.meta.events.register("before-send.s3.HeadObject", lambda **_: order.append("specific"))
    client.meta.events.register("before-send", leanpath._capture, unique_id="s3seg-lean-capture")
    client.meta.events.register("before-send", leanpath._capture, unique_id="s3seg-lean-capture")  # once only
    client.meta.events.register("before-send", lambda **_: order.append("generic, registered later"))
    leanpath._PROBING.active = True
    try:
        answer = client.head_object(Bucket="my-bucket", Key=leanpath._PROBE_KEY)
    finally:
        leanpath._PROBING.active = False
    assert order == ["specific", "generic, registered later"]  # specific first, then in registration order
    assert answer["ResponseMetadata"]["HTTPHeaders"][leanpath._PROBE_MARK] == "1"
    assert answer["ResponseMetadata"]["RetryAttempts"] == 0
    request = leanpath._PROBING.request
    assert (request.method, request.url) == (
        "HEAD",
        f"https://my-bucket.s3.eu-west-1.amazonaws.com/{leanpath._PROBE_KEY}",
    )
    assert {"Authorization", "X-Amz-Date", "X-Amz-Content-SHA256"} <= set(request.headers.keys())


@pytest.mark.parametrize("status", [200, 404])
def test_a_hook_that_answers_first_keeps_the_bucket_with_botocore(status: int) -> None:
    client = _client()
    client.meta.events.register(
        "before-send.s3",
        lambda request, **_: AWSResponse(request.url, status, {}, _Raw()),  # moto's mock, a stub
    )
    routes = leanpath.BotocoreRoutes(client, client._request_signer._credentials)
    assert routes.route("my-bucket") is None


def test_the_region_redirector_caches_bucket_regions_before_endpoint_resolution() -> None:
    # After botocore follows a redirect, a new probe resolves the bucket's real region (the route re-learned).
    src = inspect.getsource(botocore.utils.S3RegionRedirectorv2.register)
    assert "before-endpoint-resolution.s3" in src and "redirect_from_cache" in src
    assert "AWS::Region" in inspect.getsource(botocore.utils.S3RegionRedirectorv2.redirect_from_cache)


# -- signer behaviour ------------------------------------------------------------------------------------------------
def test_s3_sigv4_signs_the_path_unnormalised_and_bodyless_requests_with_the_empty_hash() -> None:
    creds = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY, "tok")
    url = "https://b.s3.eu-west-1.amazonaws.com//a/../b%2Bc"
    request = AWSRequest(method="DELETE", url=url, headers={"If-Match": '"e  x"'})
    request.context["timestamp"] = "20240102T030405Z"
    auth = botocore.auth.S3SigV4Auth(creds, "s3", "eu-west-1")
    auth._modify_request_before_signing(request)  # add_auth, minus taking the time from the clock
    auth._inject_signature_to_request(
        request, auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    )
    assert request.headers["X-Amz-Content-SHA256"] == leanpath._EMPTY_SHA256  # HTTPS, no checksum header: signed
    headers = {"If-Match": '"e  x"'}
    ours = SigV4(creds, "eu-west-1").sign(
        "DELETE", "b.s3.eu-west-1.amazonaws.com", "//a/../b%2Bc", "", headers, leanpath._EMPTY_SHA256,
        "20240102T030405Z",
    )  # fmt: skip
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["x-amz-security-token"] == request.headers["X-Amz-Security-Token"]


# -- adaptive mode: botocore's limiter, fed by the lean path ---------------------------------------------------------
def test_the_adaptive_limiter_pieces_keep_their_shape() -> None:
    sig = inspect.signature(adaptive.ClientRateLimiter)
    assert list(sig.parameters) == ["rate_adjustor", "rate_clocker", "token_bucket", "throttling_detector", "clock"]
    assert list(inspect.signature(throttling.CubicCalculator).parameters)[:2] == ["starting_max_rate", "start_time"]
    assert {"max_rate", "clock"} <= set(inspect.signature(bucket.TokenBucket).parameters)
    limiter = leanpath.rate_limiter()
    assert limiter._enabled is False
    limiter.on_sending_request(request=None)  # not enabled: returns at once
    limiter.on_receiving_response(code="SlowDown", status=503)
    assert limiter._enabled is True  # the detector's verdict is what enables the bucket
    src = inspect.getsource(adaptive.ClientRateLimiter.on_receiving_response)
    assert "self._throttling_detector.is_throttling_error(**kwargs)" in src


def test_throttling_codes_are_botocores() -> None:
    assert {"SlowDown", "Throttling", "ThrottlingException", "RequestThrottled"} <= s3errors.THROTTLING_CODES
    assert frozenset(standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES) == s3errors.THROTTLING_CODES


def test_verified_against() -> None:
    # Bump after re-checking the tests above against a new botocore (they are the contract, this is the record).
    major, minor = (int(x) for x in botocore.__version__.split(".")[:2])
    assert (major, minor) >= (1, 44), botocore.__version__
