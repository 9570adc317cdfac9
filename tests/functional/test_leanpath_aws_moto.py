"""The lean path on AWS host names against a real store: moto server behind a TLS front, virtual-hosted.

``make_storage`` with no explicit endpoint (as on AWS) must learn each bucket's route from botocore, send the
per-object calls over verified TLS to ``<bucket>.s3.<region>.amazonaws.com`` (resolved to the local front, see
``s3seg_lab/tlsfront.py``), and give the same bytes, metadata, tags, ETags and deletions as a botocore-only
``Storage`` reaching the same store the same way. A lean call silently handed to botocore fails these tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from storekit import KEYS, LEAN_OPS, _comparable

import s3seg.leanpath as leanpath
from s3seg.copyloop import CopyLoop, enabled_for
from s3seg.moves import Kind, Options, Task
from s3seg.probe import Capabilities
from s3seg.storage import ClientSpec, Storage, make_client, make_storage
from s3seg_lab import local_s3
from s3seg_lab.tlsfront import TlsFront, aws_dns, make_pki

REGION = "eu-west-1"


class Aws:
    def __init__(self, lean: Storage, boto: Storage, admin: Any, bucket: str, front: TlsFront) -> None:
        self.lean, self.boto, self.admin, self.bucket, self.front = lean, boto, admin, bucket, front
        self.botocore_ops: list[str] = []
        lean.client.meta.events.register("before-send.s3", self._record)

    def _record(self, request: Any, event_name: str, **_: Any) -> None:
        if leanpath._PROBE_KEY not in request.url:  # the route probe is built, never sent
            self.botocore_ops.append(event_name.rsplit(".", 1)[1])

    def assert_all_lean(self) -> None:
        assert self.lean.lean is not None and self.lean.lean.enabled
        assert LEAN_OPS.isdisjoint(self.botocore_ops), f"handed to botocore: {self.botocore_ops}"

    def put(self, key: str, body: bytes, **extra: Any) -> str:
        return str(self.admin.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)["ETag"])

    def body(self, key: str) -> bytes:
        return bytes(self.admin.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def keys(self) -> set[str]:
        pages = self.admin.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return {obj["Key"] for page in pages for obj in page.get("Contents", ())}

    def tags(self, key: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.admin.get_object_tagging(Bucket=self.bucket, Key=key)["TagSet"]}


@pytest.fixture
def aws(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    pki = make_pki(tmp_path / "pki")
    parts = urlsplit(moto_endpoint)
    assert parts.hostname is not None and parts.port is not None
    front = TlsFront(pki, (parts.hostname, parts.port))
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CA_BUNDLE", pki.ca_file)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", local_s3.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", local_s3.SECRET_KEY)
    admin = local_s3.client(moto_endpoint)
    bucket = f"lean-aws-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    try:
        with aws_dns(front.port):
            spec = ClientSpec(region=REGION, max_attempts=3)  # no endpoint: AWS's own
            lean = make_storage(spec)
            assert lean.lean is not None and lean.lean.routes is not None
            yield Aws(lean, Storage(make_client(spec)), admin, bucket, front)
            lean.lean.close()
    finally:
        front.close()


def test_copies_over_tls_virtual_hosted_give_what_botocore_gives(aws: Aws) -> None:
    for i, key in enumerate(KEYS):
        aws.put(f"src/{key}", f"body {i}".encode(), Metadata={"idx": str(i)}, ContentType="text/csv",
                Tagging=f"team=a%20b&idx={i}")  # fmt: skip
    for i, key in enumerate(KEYS):
        args: dict[str, Any] = {"if_match": None, "if_none_match": True, "storage_class": "STANDARD_IA" * (i % 3 == 1)}
        ours = aws.lean.copy(aws.bucket, f"src/{key}", aws.bucket, f"lean/{key}", **args)
        theirs = aws.boto.copy(aws.bucket, f"src/{key}", aws.bucket, f"boto/{key}", **args)
        assert ours == theirs, key
        assert aws.body(f"lean/{key}") == f"body {i}".encode(), key
        ours_head = aws.admin.head_object(Bucket=aws.bucket, Key=f"lean/{key}")
        theirs_head = aws.admin.head_object(Bucket=aws.bucket, Key=f"boto/{key}")
        for field in ("ETag", "Metadata", "ContentType", "StorageClass"):
            assert ours_head.get(field) == theirs_head.get(field), (key, field)
        assert aws.tags(f"lean/{key}") == aws.tags(f"boto/{key}") == {"team": "a b", "idx": str(i)}, key
    assert aws.keys() == {f"{p}/{k}" for p in ("src", "lean", "boto") for k in KEYS}
    aws.assert_all_lean()
    assert set(aws.front.sni) == {f"{aws.bucket}.s3.{REGION}.amazonaws.com"}


def test_heads_over_tls_read_what_botocore_reads(aws: Aws) -> None:
    for i, key in enumerate(KEYS):
        aws.put(key, b"x" * i, Metadata={"color": "blue"}, ContentType="image/png")
    for key in [*KEYS, "absent", "absent/😀"]:
        ours, theirs = aws.lean.head(aws.bucket, key), aws.boto.head(aws.bucket, key)
        assert _comparable(ours, False) == _comparable(theirs, False), key
        assert (ours is None) == (key not in KEYS), key
    aws.assert_all_lean()


def test_listings_over_tls_are_botocores_pages(aws: Aws) -> None:
    keys = [*KEYS, *(f"many/{i:02d}" for i in range(15))]
    for key in keys:
        aws.put(key, b"x")
    for prefix, kw in [("", {"page_size": 4}), ("many/", {"page_size": 7, "start_after": "many/03"}),
                       ("", {"delimiter": "/"})]:  # fmt: skip
        ours = list(aws.lean.list_pages(aws.bucket, prefix, **kw))
        assert ours == list(aws.boto.list_pages(aws.bucket, prefix, **kw)), (prefix, kw)
    assert sorted(o.key for p in aws.lean.list_pages(aws.bucket, "", page_size=5) for o in p) == sorted(keys)
    assert "ListObjectsV2" not in aws.botocore_ops
    aws.assert_all_lean()


def test_deletes_over_tls_delete_exactly_the_given_keys(aws: Aws) -> None:
    etags = {f"{p}/{k}": aws.put(f"{p}/{k}", p.encode()) for p in ("lean", "boto", "keep") for k in KEYS}

    def batch(prefix: str) -> list[tuple[str, str | None]]:
        items = [(f"{prefix}/{k}", etags[f"{prefix}/{k}"] if i % 2 else None) for i, k in enumerate(KEYS)]
        return [*items, (f"{prefix}/never-existed", None)]

    ours = aws.lean.delete_batch(aws.bucket, batch("lean"))
    theirs = aws.boto.delete_batch(aws.bucket, batch("boto"))
    assert ours == theirs == {}
    assert aws.keys() == {f"keep/{k}" for k in KEYS}
    aws.lean.delete(aws.bucket, f"keep/{KEYS[0]}", if_match=etags[f"keep/{KEYS[0]}"])
    aws.lean.delete(aws.bucket, f"keep/{KEYS[1]}")
    assert aws.keys() == {f"keep/{k}" for k in KEYS[2:]}
    assert all(aws.body(f"keep/{k}") == b"keep" for k in KEYS[2:])
    aws.assert_all_lean()


def _loop_tasks(aws: Aws, etags: dict[str, str]) -> list[Task]:
    return [Task(i, aws.bucket, f"src/{k}", aws.bucket, f"loop/{k}", etags[k], len(f"body {i}"))
            for i, k in enumerate(KEYS)]  # fmt: skip


def test_the_copy_loop_sends_over_tls_virtual_hosted_what_the_lean_path_sends(aws: Aws) -> None:
    etags = {}
    for i, key in enumerate(KEYS):
        etags[key] = aws.put(f"src/{key}", f"body {i}".encode(), Metadata={"idx": str(i)}, Tagging=f"idx={i}")
    assert aws.lean.lean is not None and enabled_for(aws.lean.lean)
    loop = CopyLoop(aws.lean.lean, Options(caps=Capabilities.trusted()), gate=None, fixed=4)
    handed: list[Task] = []
    done = loop.run(_loop_tasks(aws, etags), lambda t, s: handed.append(t), lambda t: None)
    assert not handed and len(done) == len(KEYS) and all(r.kind is Kind.COPIED for r in done.values())
    for i, key in enumerate(KEYS):
        assert aws.body(f"loop/{key}") == f"body {i}".encode(), key
        assert aws.admin.head_object(Bucket=aws.bucket, Key=f"loop/{key}")["Metadata"] == {"idx": str(i)}, key
        assert aws.tags(f"loop/{key}") == {"idx": str(i)}, key
    aws.assert_all_lean()
    assert set(aws.front.sni) == {f"{aws.bucket}.s3.{REGION}.amazonaws.com"}
    assert loop.sent == len(KEYS)


def test_the_copy_loop_hands_back_unsent_what_a_refused_certificate_stops(
    aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etags = {key: aws.put(f"src/{key}", f"body {i}".encode()) for i, key in enumerate(KEYS)}
    monkeypatch.setenv("AWS_CA_BUNDLE", make_pki(tmp_path / "other", label="another CA").ca_file)
    other = make_storage(ClientSpec(region=REGION, max_attempts=3))
    assert other.lean is not None
    handed: dict[int, object] = {}
    done = CopyLoop(other.lean, Options(caps=Capabilities.trusted()), gate=None, fixed=4).run(
        _loop_tasks(aws, etags), lambda t, s: handed.__setitem__(t.id, s), lambda t: None
    )
    # Never sent: the pool's lean path meets the same refusal and botocore gives the verdict.
    assert not done and handed == {i: None for i in range(len(KEYS))}
    assert not {f"loop/{k}" for k in KEYS} & aws.keys()
