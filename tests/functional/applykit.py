"""Helpers of the functional apply/rollback/verify/report tests (in-process moto, the inline backend): seeding,
planning, reading the journal, the CLI in process, and ``Enforcer`` (AWS's copy conditions, which moto ignores,
emulated three ways; the ``enforce`` fixture in ``conftest.py`` installs it).

A plain module, not a test module: the test files import from here, never from each other.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import botocore.client
import botocore.exceptions
import pytest
from botocore.awsrequest import AWSResponse
from helpers import cdr_key, record_ids, write_config

import s3seg.executor
import s3seg.storage
import s3seg.worker
from s3seg import cli, commands, config, leanpath
from s3seg.errors import StorageError

NOW = datetime(2023, 1, 2, 12, 0, 0)
SEG = "segregated/2022/12/31/10/"  # where cdr_key(n) (2022-12-31, hour 10) goes
MODES = ["client", "server-call", "server-send", "server-patch"]
MIB = 1024 * 1024


def endpoint_of(s3: Any) -> str | None:
    url = str(s3.meta.endpoint_url)
    return url if url.startswith("http://127.0.0.1") else None


def dst_of(src_key: str) -> str:
    """The destination the example rule gives a key planned from ``incoming/`` (independent of s3seg)."""
    name = src_key.removeprefix("incoming/")
    return SEG + name if name.startswith("CHARGINGCDR_") and "-20221231-10" in name else "error/" + name


def put(s3: Any, bucket: str, key: str, body: bytes, **extra: Any) -> str:
    return str(s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)["ETag"])


def contents(s3: Any, bucket: str) -> dict[str, Any]:
    """key -> bytes for every object; an archived object (no GET possible) -> ("archived", class, etag)."""
    out: dict[str, Any] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            cls = obj.get("StorageClass", "STANDARD")
            if cls in ("GLACIER", "DEEP_ARCHIVE"):
                out[obj["Key"]] = ("archived", cls, obj["ETag"])
            else:
                out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def make_plan(s3: Any, tmp_path: Path, bucket: str, **cfg: Any) -> str:
    path = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=endpoint_of(s3), **cfg)
    manifest = str(tmp_path / "plan.jsonl")
    commands.plan(config.load(path), manifest, now=NOW)
    return manifest


def seed(s3: Any, bucket: str, n: int, start: int = 1) -> dict[str, bytes]:
    objects = {cdr_key(i): f"cdr body {i}\n".encode() * (i % 7 + 1) for i in range(start, start + n)}
    for key, body in objects.items():
        put(s3, bucket, key, body)
    return objects


def moved(objects: dict[str, bytes]) -> dict[str, bytes]:
    return {dst_of(k): v for k, v in objects.items()}


def writes(mode: str) -> str:
    """The --conditional-writes value for a test mode (every "server-*" emulation is "server")."""
    return "server" if mode.startswith("server") else mode


def opts(mode: str = "client", **kw: Any) -> commands.ExecOptions:
    return commands.ExecOptions(processes=0, threads=4, conditional_writes=writes(mode), **kw)


def journal_records(manifest: str) -> list[dict[str, Any]]:
    with open(manifest + ".journal", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def outcomes(manifest: str, direction: str = "apply") -> dict[int, str]:
    """Latest outcome status per id in the journal."""
    out: dict[int, str] = {}
    for r in journal_records(manifest)[1:]:
        if r["ev"] == "outcome" and r["dir"] == direction:
            for i in record_ids(r):
                out[i] = r["status"]
    return out


def manifest_ids(manifest: str) -> dict[str, int]:
    """src_key -> move id."""
    with open(manifest, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return {r["src_key"]: r["id"] for r in rows if "id" in r}


def cli_run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.run_cli(list(args), out)
    return code, out.getvalue()


_PRECONDITION_XML = (
    b"<Error><Code>PreconditionFailed</Code>"
    b"<Message>At least one of the pre-conditions you specified did not hold</Message></Error>"
)


class Enforcer:
    """AWS's CopyObject / UploadPartCopy conditions, which moto ignores, emulated in front of moto.

    Three ways in, one per mode:

    * "server-send": a ``before-send`` hook that returns a 412 response, on clients talking to the moto
      server: botocore then never sends the request. (In-process moto runs every ``before-send`` handler,
      its own included, so there the request would still execute.)
    * "server-call": a ``before-call`` hook that returns the 412 (in-process moto: no request is made).
    * "server-patch": ``Storage.copy`` raises the translated ``StorageError(code="PreconditionFailed")``.

    ``refused`` counts the 412s actually injected, so a test can prove the path ran.
    """

    def __init__(self, oracle: Any) -> None:
        self.oracle = oracle  # a separate, hook-free client: the true state
        self.refused = 0
        self._local = threading.local()
        self._lock = threading.Lock()

    def _etag(self, bucket: str, key: str) -> str | None:
        try:
            return str(self.oracle.head_object(Bucket=bucket, Key=key)["ETag"])
        except botocore.exceptions.ClientError:
            return None

    def would_refuse(self, src: dict[str, str], dst_bucket: str, dst_key: str, if_match: Any, if_none: Any) -> bool:
        current = self._etag(src["Bucket"], src["Key"])
        refuse = bool(if_match and current is not None and current != if_match) or (
            if_none == "*" and self._etag(dst_bucket, dst_key) is not None
        )
        if refuse:
            with self._lock:
                self.refused += 1
        return refuse

    def _stash(self, params: dict[str, Any], **_: Any) -> None:
        self._local.params = dict(params, CopySource=dict(params["CopySource"]))

    def _refuse_this(self) -> bool:
        p = self._local.params
        return self.would_refuse(
            p["CopySource"], p["Bucket"], p["Key"], p.get("CopySourceIfMatch"), p.get("IfNoneMatch")
        )

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        if not self._refuse_this():
            return None
        return AWSResponse(request.url, 412, {"Content-Type": "application/xml"}, _Raw(_PRECONDITION_XML))

    def _before_call(self, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if not self._refuse_this():
            return None
        http = AWSResponse("", 412, {"Content-Type": "application/xml"}, _Raw(_PRECONDITION_XML))
        parsed = {
            "Error": {"Code": "PreconditionFailed", "Message": "At least one of the pre-conditions did not hold"},
            "ResponseMetadata": {"HTTPStatusCode": 412, "HTTPHeaders": {}},
        }
        return http, parsed

    def hook(self, client: Any, event: str) -> Any:
        for op in ("CopyObject", "UploadPartCopy"):
            client.meta.events.register_first(f"before-parameter-build.s3.{op}", self._stash)
            if event == "before-send":
                client.meta.events.register_first(f"before-send.s3.{op}", self._before_send)
            else:
                client.meta.events.register_first(f"before-call.s3.{op}", self._before_call)
        return client

    def install(self, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
        if mode in ("server-send", "server-call"):
            real = s3seg.worker.make_client
            event = "before-send" if mode == "server-send" else "before-call"
            monkeypatch.setattr(s3seg.worker, "make_client", lambda spec: self.hook(real(spec), event))
        elif mode == "server-patch":
            real_copy = s3seg.storage.Storage.copy
            enforcer = self

            def copy(
                st: Any, sb: str, sk: str, db: str, dk: str, *, if_match: Any, if_none_match: bool, **kw: Any
            ) -> str:
                if enforcer.would_refuse({"Bucket": sb, "Key": sk}, db, dk, if_match, "*" if if_none_match else None):
                    raise StorageError("CopyObject", db, dk, "PreconditionFailed", "injected", status=412)
                return real_copy(st, sb, sk, db, dk, if_match=if_match, if_none_match=if_none_match, **kw)

            monkeypatch.setattr(s3seg.storage.Storage, "copy", copy)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def deny_delete(s3: Any, bucket: str, keys: list[str]) -> None:
    statement = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:DeleteObject",
        "Resource": [f"arn:aws:s3:::{bucket}/{k}" for k in keys],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))


def count_api_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every botocore API call made from now on (in this process), by operation name."""
    calls: list[str] = []
    real = botocore.client.BaseClient._make_api_call

    def spy(self: Any, operation: str, params: Any) -> Any:
        # The lean path learns a bucket's AWS route from a HeadObject botocore builds and a before-send hook
        # answers: never sent to AWS, but moto's in-process mock answers it first. Not a request of the code.
        if params.get("Key") != leanpath._PROBE_KEY:
            calls.append(operation)
        return real(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", spy)
    return calls


class Crash(BaseException):
    """Raised at a crash point: unwinds like a kill, past every ``except Exception``."""


def crash_at(monkeypatch: pytest.MonkeyPatch, point: str, nth: int = 1) -> None:
    """Make the parent die the ``nth`` time it reaches ``point`` (the in-process twin of S3SEG_CRASH_AT)."""
    hits = {"n": 0}

    def crash_point(name: str) -> None:
        if name == point:
            hits["n"] += 1
            if hits["n"] == nth:
                raise Crash(point)

    monkeypatch.setattr(s3seg.executor, "crash_point", crash_point)
