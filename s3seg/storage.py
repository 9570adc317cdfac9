"""The only module that talks to S3: builds clients and wraps the calls s3seg needs.

Owns: client construction from a picklable ``ClientSpec`` (never a client or credentials across a process
boundary), the explicit botocore retry configuration, the handful of S3 calls (list, get, head, copy,
multipart copy, delete, batch delete), the probe of which conditional headers a store enforces, and the
translation of every botocore error into ``StorageError`` (here and nowhere else).

Must not: decide what a result means for a move; ``moves`` does that.
"""

from __future__ import annotations

import email.utils
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.configprovider
import botocore.exceptions
import botocore.session
import botocore.utils

from s3seg.errors import StorageError, UsageError
from s3seg.leanpath import RETRYABLE_CODES, LeanPath, UseBotocore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

ARCHIVED_CODES = frozenset({"InvalidObjectState", "ObjectNotInActiveTierError"})
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
PRECONDITION_CODES = frozenset({"412", "PreconditionFailed"})
# What a botocore call can raise: service errors and transport errors. Nothing else is caught here.
_BOTO_ERRORS = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)
# XML 1.0 cannot carry these, so DeleteObjects may choke on such keys: delete them one by one.
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# Defaults under which an endpoint that accepts connections and never answers ends a run's first request within
# about a minute (the preflight makes 2 attempts; see ``commands.preflight``). botocore's own are 60 s / 60 s.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSpec:
    """How to build an S3 client. Picklable and credential-free: each process builds its own client."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    max_pool_connections: int = 10
    max_attempts: int = 8
    retry_mode: str = "standard"
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT
    lean_http: bool = True  # the lean request path for per-object calls (see leanpath); False: botocore only


def _parse_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser with a fast path for the ISO 8601 form of S3's XML bodies.

    botocore hands every ``LastModified`` to dateutil, which costs about 7% of the client CPU of a CopyObject
    (and more per key in a listing). ``fromisoformat`` reads ``2024-01-01T00:00:00.000Z`` to the same aware
    datetime; anything else (naive times, RFC 1123 headers, epochs) goes to botocore's parser as before.
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


# botocore >= 1.34's switch for AWS_ENDPOINT_URL* and the config file's endpoint_url (not in the type stubs).
_NO_CONFIGURED_ENDPOINTS: dict[str, Any] = {"ignore_configured_endpoint_urls": True}


def make_client(spec: ClientSpec) -> S3Client:
    """A boto3 S3 client built in the calling process from the standard credential chain."""
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_parse_timestamp)
    try:
        session = boto3.session.Session(botocore_session=core, profile_name=spec.profile, region_name=spec.region)
    except botocore.exceptions.ProfileNotFound:
        raise UsageError(
            f"AWS profile {spec.profile or core.profile!r} is not in the AWS config or credentials file "
            "(from --profile, <profile> or AWS_PROFILE): check its name"
        ) from None
    config = botocore.config.Config(
        max_pool_connections=spec.max_pool_connections,
        retries={"mode": spec.retry_mode, "total_max_attempts": spec.max_attempts},  # type: ignore[arg-type]
        connect_timeout=spec.connect_timeout,
        read_timeout=spec.read_timeout,
        s3={"addressing_style": "path"} if spec.endpoint_url else None,
        # Checksums only where the API demands one (DeleteObjects): we never upload bodies, and computing
        # them on every request costs client CPU for nothing.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # The endpoint was resolved once, in the parent, and recorded (``configured_endpoint``): a worker process
        # (or a Dask worker on another host) whose environment or AWS config names another endpoint must not
        # silently send a manifest's moves there. ``None`` means AWS's own endpoint.
        **_NO_CONFIGURED_ENDPOINTS,
    )
    try:
        return session.client("s3", endpoint_url=spec.endpoint_url, config=config)
    except botocore.exceptions.InvalidRegionError:
        raise UsageError(f"region {spec.region!r} is not a valid AWS region name (e.g. us-east-1)") from None
    except ValueError as exc:  # botocore: an endpoint URL it cannot use
        raise UsageError(f"cannot build an S3 client: {exc}") from None


def configured_endpoint(spec: ClientSpec) -> str | None:
    """The endpoint botocore would send S3 requests to for ``spec``, or ``None`` for AWS's own default.

    ``spec.endpoint_url`` (a flag, a config element, a manifest) wins. Otherwise botocore's own configured
    endpoint sources decide, through botocore's own resolver (``ConfiguredEndpointProvider``, the one a client
    uses to fill ``meta.endpoint_url``), in its order: ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, the
    profile's ``services`` section, the profile's ``endpoint_url``; all switched off by
    ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`` / ``ignore_configured_endpoint_urls``. No client is built, no
    request is sent and no credentials are needed (so a refusal costs nothing).
    """
    if spec.endpoint_url:
        return spec.endpoint_url
    try:
        session = botocore.session.Session(profile=spec.profile)
        if session.get_config_variable("ignore_configured_endpoint_urls"):
            return None
        provider = botocore.configprovider.ConfiguredEndpointProvider(
            full_config=session.full_config, scoped_config=session.get_scoped_config(), client_name="s3"
        )
        found = provider.provide()
    except _BOTO_ERRORS as exc:  # an unknown profile, a malformed config file, ...
        raise StorageError("ResolveEndpoint", "", "", type(exc).__name__, str(exc)) from None
    return str(found) if found else None


def make_storage(spec: ClientSpec, client: S3Client | None = None) -> Storage:
    """A ``Storage`` over ``client`` (default: a new one from ``spec``), with the lean path where it applies.

    An explicit endpoint (S3-compatible stores) gets one path-style route for every bucket; AWS itself gets
    per-bucket routes learned from botocore (regional endpoint, virtual-hosted addressing, HTTPS), and botocore
    keeps the buckets, settings and answers it alone knows (see ``leanpath``).
    """
    client = client if client is not None else make_client(spec)
    lean = None
    if spec.lean_http:
        lean = LeanPath.for_client(client) if spec.endpoint_url else LeanPath.for_aws(client)
    return Storage(client, lean)


@dataclass(frozen=True, slots=True, kw_only=True)
class Listed:
    """One object from a listing page."""

    key: str
    size: int
    etag: str
    storage_class: str
    last_modified: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Stamped:
    """A small object as read, with the store's clock at the time of reading."""

    body: bytes
    etag: str
    last_modified: datetime
    server_now: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectInfo:
    """What HEAD says about an object."""

    etag: str
    size: int
    storage_class: str = "STANDARD"
    content_type: str = ""
    metadata: dict[str, str] | None = None
    sse: str | None = None
    sse_kms_key_id: str | None = None
    bucket_key_enabled: bool | None = None
    raw: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """Which conditional headers the store enforces (True) or silently ignores (False)."""

    copy_if_match: bool  # CopyObject CopySourceIfMatch
    copy_if_none_match: bool  # CopyObject IfNoneMatch="*"
    delete_if_match: bool  # DeleteObject IfMatch
    batch_delete_etag: bool  # DeleteObjects per-object ETag

    @classmethod
    def trusted(cls) -> Capabilities:
        return cls(copy_if_match=True, copy_if_none_match=True, delete_if_match=True, batch_delete_etag=True)

    @classmethod
    def none(cls) -> Capabilities:
        return cls(copy_if_match=False, copy_if_none_match=False, delete_if_match=False, batch_delete_etag=False)

    def describe(self) -> str:
        def word(flag: bool) -> str:
            return "server-enforced" if flag else "client-checked"

        return (
            f"copy source version: {word(self.copy_if_match)}; no-overwrite on copy: "
            f"{word(self.copy_if_none_match)}; delete condition: "
            f"{'batched, server-enforced' if self.batch_delete_etag else word(self.delete_if_match)}"
        )


def translate(
    exc: botocore.exceptions.ClientError | botocore.exceptions.BotoCoreError, op: str, bucket: str, key: str
) -> StorageError:
    """botocore exception -> StorageError. The single place low-level errors are interpreted."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or "Unknown")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code.isdigit() and code == "404":
            code = "NoSuchKey"
        if code == "412":
            code = "PreconditionFailed"
        retryable = code in RETRYABLE_CODES or (isinstance(status, int) and status >= 500)
        # A 412/404 after botocore's own retry may be our first, applied attempt whose answer was lost.
        retried = bool(exc.response.get("ResponseMetadata", {}).get("RetryAttempts"))
        return StorageError(
            op, bucket, key, code, str(err.get("Message", "")), status=status, retryable=retryable, retried=retried
        )
    # Transport errors: the request may or may not have been applied; the item protocol re-checks.
    return StorageError(op, bucket, key, type(exc).__name__, str(exc), retryable=True)


def quoted(etag: str) -> str:
    """ETags in one canonical form, quoted as S3 sends them (SeaweedFS drops the quotes on copy results)."""
    return etag if etag.startswith('"') or etag.startswith('W/"') else f'"{etag}"'


def is_xml_safe(key: str) -> bool:
    return _XML_UNSAFE.search(key) is None


class Storage:
    """A thin, typed facade over one boto3 client (thread-safe, like the client).

    With ``lean``, the per-object calls (CopyObject, HeadObject, DeleteObject, DeleteObjects) go through the
    lean path first; whatever it hands back (``UseBotocore``) is sent again through botocore, here.
    """

    def __init__(self, client: S3Client, lean: LeanPath | None = None) -> None:
        self.client = client
        self.lean = lean

    def _lean(self) -> LeanPath | None:
        lean = self.lean
        return lean if lean is not None and lean.enabled else None

    def _after_fallback(self, why: UseBotocore | None, err: StorageError | None = None) -> None:
        """Bookkeeping once botocore answered a request the lean path handed over."""
        if why is None:
            return
        if err is not None and why.maybe_applied:
            err.retried = True  # an earlier lean attempt may have been applied: same rule as botocore retries
        if err is None and why.suspect and self.lean is not None:
            self.lean.disable(f"botocore succeeded where the lean path was refused ({why})")

    # -- reading ----------------------------------------------------------------------------------------------
    def list_pages(
        self, bucket: str, prefix: str, *, delimiter: str = "", page_size: int = 1000, start_after: str = ""
    ) -> Iterator[list[Listed]]:
        """Yield listing pages of at most ``page_size`` objects, in key order (common prefixes dropped)."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        if start_after:
            kwargs["StartAfter"] = start_after
        while True:
            try:
                page = self.client.list_objects_v2(**kwargs)
            except _BOTO_ERRORS as exc:
                raise translate(exc, "ListObjectsV2", bucket, prefix) from None
            yield [
                Listed(
                    key=obj["Key"],
                    size=obj["Size"],
                    etag=quoted(obj["ETag"]),
                    storage_class=obj.get("StorageClass", "STANDARD"),
                    last_modified=obj["LastModified"].isoformat(),
                )
                for obj in page.get("Contents", ())
            ]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token
            kwargs.pop("StartAfter", None)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        """The whole body of a small object (an S3 Inventory manifest.json, say)."""
        return b"".join(self.get_chunks(bucket, key))

    def get_chunks(self, bucket: str, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """The body of an object as a stream of chunks: flat memory for large files (inventory data files)."""
        try:
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                while chunk := body.read(chunk_size):
                    yield chunk
            finally:
                body.close()
        except _BOTO_ERRORS as exc:
            raise translate(exc, "GetObject", bucket, key) from None

    def same_content(
        self, a_bucket: str, a_key: str, b_bucket: str, b_key: str, size: int, chunk: int = 16 * 1024 * 1024
    ) -> bool:
        """True if both objects hold the same ``size`` bytes, compared range by range (flat memory)."""
        for start in range(0, size, chunk):
            rng = f"bytes={start}-{min(start + chunk, size) - 1}"
            parts = []
            for bucket, key in ((a_bucket, a_key), (b_bucket, b_key)):
                try:
                    parts.append(self.client.get_object(Bucket=bucket, Key=key, Range=rng)["Body"].read())
                except _BOTO_ERRORS as exc:
                    err = translate(exc, "GetObject", bucket, key)
                    if err.code in NOT_FOUND_CODES:
                        return False
                    raise err from None
            if parts[0] != parts[1]:
                return False
        return True

    def head(self, bucket: str, key: str, *, full: bool = False) -> ObjectInfo | None:
        """HEAD an object; None if it does not exist. ``full``: with every header botocore parses (``raw``)."""
        why: UseBotocore | None = None
        lean = self._lean()
        if lean is not None and not full:
            try:
                headers = lean.head(bucket, key)
            except UseBotocore as exc:
                why = exc
            else:
                return None if headers is None else _info_from_headers(headers)
        try:
            r = self.client.head_object(Bucket=bucket, Key=key)
        except _BOTO_ERRORS as exc:
            err = translate(exc, "HeadObject", bucket, key)
            if err.code in NOT_FOUND_CODES:
                self._after_fallback(why)
                return None
            self._after_fallback(why, err)
            raise err from None
        self._after_fallback(why)
        return ObjectInfo(
            etag=quoted(r["ETag"]),
            size=r["ContentLength"],
            storage_class=r.get("StorageClass", "STANDARD"),
            content_type=r.get("ContentType", ""),
            metadata=r.get("Metadata", {}),
            sse=r.get("ServerSideEncryption"),
            sse_kms_key_id=r.get("SSEKMSKeyId"),
            bucket_key_enabled=r.get("BucketKeyEnabled"),
            raw=dict(r),
        )

    def tagging(self, bucket: str, key: str) -> str:
        """The object's tags as a URL-encoded query string (what CreateMultipartUpload takes)."""
        from urllib.parse import urlencode

        try:
            r = self.client.get_object_tagging(Bucket=bucket, Key=key)
        except _BOTO_ERRORS as exc:
            raise translate(exc, "GetObjectTagging", bucket, key) from None
        return urlencode([(t["Key"], t["Value"]) for t in r.get("TagSet", [])])

    # -- writing ----------------------------------------------------------------------------------------------
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
        sse: dict[str, Any] | None = None,
    ) -> str:
        """CopyObject keeping metadata, Content-Type and tags; returns the new object's ETag.

        ``CopySource`` is a dict, never a string: botocore then encodes the key exactly once, so keys with
        ``+``, ``%2B``, ``?versionId=`` or unicode copy the right object (S3-FACTS "Copy").
        """
        why: UseBotocore | None = None
        lean = self._lean()
        if lean is not None and not sse:
            try:
                etag = lean.copy(
                    src_bucket, src_key, dst_bucket, dst_key,
                    if_match=if_match, if_none_match=if_none_match, storage_class=storage_class,
                )  # fmt: skip
            except UseBotocore as exc:
                why = exc
            else:
                return quoted(etag)
        kwargs: dict[str, Any] = {
            "Bucket": dst_bucket,
            "Key": dst_key,
            "CopySource": {"Bucket": src_bucket, "Key": src_key},
            "MetadataDirective": "COPY",
            "TaggingDirective": "COPY",
        }
        if if_match:
            kwargs["CopySourceIfMatch"] = if_match
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if storage_class and storage_class != "STANDARD":
            kwargs["StorageClass"] = storage_class
        if sse:
            kwargs.update(sse)
        try:
            r = self.client.copy_object(**kwargs)
        except _BOTO_ERRORS as exc:
            err = translate(exc, "CopyObject", dst_bucket, dst_key)
            self._after_fallback(why, err)
            raise err from None
        self._after_fallback(why)
        return quoted(str(r["CopyObjectResult"]["ETag"]))

    def multipart_copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        source: ObjectInfo,
        if_match: str | None,
        if_none_match: bool,
        part_size: int,
        sse: dict[str, Any] | None = None,
    ) -> str:
        """Copy an object too large for CopyObject (or above the configured threshold) part by part.

        A multipart copy does not carry metadata or tags by itself: they are sent explicitly from ``source``'s
        HEAD and its tagging. Every part copy is conditioned on the planned source ETag, so a source changed
        mid-way fails the copy instead of stitching two versions together. On any failure the upload is
        aborted, leaving no destination object.
        """
        raw = source.raw or {}
        create: dict[str, Any] = {"Bucket": dst_bucket, "Key": dst_key, "Metadata": source.metadata or {}}
        for field in ("ContentType", "ContentEncoding", "ContentDisposition", "ContentLanguage", "CacheControl"):
            if raw.get(field):
                create[field] = raw[field]
        if raw.get("Expires"):
            create["Expires"] = raw["Expires"]
        if source.storage_class and source.storage_class != "STANDARD":
            create["StorageClass"] = source.storage_class
        tags = self.tagging(src_bucket, src_key)
        if tags:
            create["Tagging"] = tags
        if sse:
            create.update(sse)
        try:
            upload_id = self.client.create_multipart_upload(**create)["UploadId"]
        except _BOTO_ERRORS as exc:
            raise translate(exc, "CreateMultipartUpload", dst_bucket, dst_key) from None
        try:
            parts = []
            for number, start in enumerate(range(0, source.size, part_size), start=1):
                end = min(start + part_size, source.size) - 1
                part: dict[str, Any] = {
                    "Bucket": dst_bucket,
                    "Key": dst_key,
                    "UploadId": upload_id,
                    "PartNumber": number,
                    "CopySource": {"Bucket": src_bucket, "Key": src_key},
                    "CopySourceRange": f"bytes={start}-{end}",
                }
                if if_match:
                    part["CopySourceIfMatch"] = if_match
                try:
                    r = self.client.upload_part_copy(**part)
                except _BOTO_ERRORS as exc:
                    raise translate(exc, "UploadPartCopy", dst_bucket, dst_key) from None
                parts.append({"PartNumber": number, "ETag": r["CopyPartResult"]["ETag"]})
            complete: dict[str, Any] = {
                "Bucket": dst_bucket,
                "Key": dst_key,
                "UploadId": upload_id,
                "MultipartUpload": {"Parts": parts},
            }
            if if_none_match:
                complete["IfNoneMatch"] = "*"
            try:
                r2 = self.client.complete_multipart_upload(**complete)
            except _BOTO_ERRORS as exc:
                raise translate(exc, "CompleteMultipartUpload", dst_bucket, dst_key) from None
            return quoted(str(r2["ETag"]))
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=dst_bucket, Key=dst_key, UploadId=upload_id)
            except _BOTO_ERRORS:  # best effort; a stale upload holds no visible object
                log.warning("could not abort multipart upload %s for s3://%s/%s", upload_id, dst_bucket, dst_key)
            raise

    def delete(self, bucket: str, key: str, *, if_match: str | None = None) -> None:
        """DeleteObject, conditioned on the ETag where given (never by VersionId: that destroys data)."""
        why: UseBotocore | None = None
        lean = self._lean()
        if lean is not None:
            try:
                return lean.delete(bucket, key, if_match=if_match)
            except UseBotocore as exc:
                why = exc
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if if_match:
            kwargs["IfMatch"] = if_match
        try:
            self.client.delete_object(**kwargs)
        except _BOTO_ERRORS as exc:
            err = translate(exc, "DeleteObject", bucket, key)
            self._after_fallback(why, err)
            raise err from None
        self._after_fallback(why)

    def delete_batch(self, bucket: str, items: list[tuple[str, str | None]]) -> dict[str, StorageError]:
        """DeleteObjects for up to 1,000 (key, etag-or-None); returns the per-key errors (empty: all deleted).

        S3 answers 200 even when keys fail, so every ``Errors`` entry is turned into a ``StorageError``. A key
        missing from both ``Deleted`` and ``Errors`` is reported as an error too: never assume success.
        """
        if not items:
            return {}
        why: UseBotocore | None = None
        lean = self._lean()
        if lean is not None:
            try:
                deleted, failed = lean.delete_objects(bucket, items)
            except UseBotocore as exc:
                why = exc
            except StorageError as lean_err:
                return {key: lean_err for key, _ in items}
            else:
                return _batch_errors(bucket, items, deleted, failed)
        objects: list[dict[str, Any]] = []
        for key, etag in items:
            obj: dict[str, Any] = {"Key": key}
            if etag:
                obj["ETag"] = etag
            objects.append(obj)
        try:
            r = self.client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": False})  # type: ignore[typeddict-item]
        except _BOTO_ERRORS as exc:
            err = translate(exc, "DeleteObjects", bucket, items[0][0])
            self._after_fallback(why, err)
            return {key: err for key, _ in items}
        self._after_fallback(why)
        failed = [(e.get("Key", ""), e.get("Code", "Unknown"), e.get("Message", "")) for e in r.get("Errors", ())]
        return _batch_errors(bucket, items, {str(d.get("Key")) for d in r.get("Deleted", ())}, failed)

    def put(
        self, bucket: str, key: str, body: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        """PutObject of a small body; ``if_none_match`` creates only, ``if_match`` replaces only that version."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body}
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match:
            kwargs["IfMatch"] = if_match
        try:
            return quoted(str(self.client.put_object(**kwargs)["ETag"]))
        except _BOTO_ERRORS as exc:
            raise translate(exc, "PutObject", bucket, key) from None

    def read_small(self, bucket: str, key: str) -> Stamped | None:
        """A small object's body with its ETag, LastModified and the store's own clock (the answer's Date);
        None if absent. What a lease needs to judge age by the store's clock, never by ours."""
        try:
            r = self.client.get_object(Bucket=bucket, Key=key)
            body = r["Body"].read()
        except _BOTO_ERRORS as exc:
            err = translate(exc, "GetObject", bucket, key)
            if err.code in NOT_FOUND_CODES:
                return None
            raise err from None
        date = r.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date", "")
        try:
            server_now = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            server_now = datetime.now(UTC)  # a store without a Date header: our clock is all there is
        return Stamped(body=body, etag=quoted(str(r["ETag"])), last_modified=r["LastModified"], server_now=server_now)

    # -- capabilities -----------------------------------------------------------------------------------------
    def probe(self, bucket: str, prefix: str = ".s3seg-probe/") -> Capabilities:
        """Find out which conditional headers this store enforces, with scratch objects under ``prefix``.

        Each check sends a request that an enforcing store must refuse with 412; a store that answers 200
        instead ignores the header, and s3seg then checks that condition itself (HEAD) before acting.
        Everything created here is deleted again.
        """
        self._sweep_stale_probes(bucket, prefix)
        base = f"{prefix}{uuid.uuid4().hex}/"
        a, b, c = base + "a", base + "b", base + "c"
        wrong = '"00000000000000000000000000000000"'
        created = [a, b]
        try:
            self.put(bucket, a, b"s3seg probe a")
            self.put(bucket, b, b"s3seg probe b")
            copy_if_match = self._refused(
                lambda: self.copy(bucket, a, bucket, c, if_match=wrong, if_none_match=False, storage_class="")
            )
            created.append(c)
            copy_if_none_match = self._refused(
                lambda: self.copy(bucket, a, bucket, b, if_match=None, if_none_match=True, storage_class="")
            )
            delete_if_match = self._refused(lambda: self.delete(bucket, a, if_match=wrong))
            errors = self.delete_batch(bucket, [(b, wrong)])
            batch_delete_etag = b in errors and errors[b].code in PRECONDITION_CODES
        finally:
            for key in created:
                try:
                    self.delete(bucket, key)
                except StorageError:
                    log.warning("could not delete probe object s3://%s/%s", bucket, key)
        return Capabilities(
            copy_if_match=copy_if_match,
            copy_if_none_match=copy_if_none_match,
            delete_if_match=delete_if_match,
            batch_delete_etag=batch_delete_etag,
        )

    def _sweep_stale_probes(self, bucket: str, prefix: str, max_age: timedelta = timedelta(hours=1)) -> None:
        """Delete scratch objects that earlier probes, killed mid-way, left under ``prefix`` (older than an hour:
        a probe takes seconds, so a younger one may belong to a run that is probing right now). Best effort."""
        cutoff = datetime.now(UTC) - max_age
        try:
            for page in self.list_pages(bucket, prefix):
                stale = [o.key for o in page if datetime.fromisoformat(o.last_modified) < cutoff]
                for key in stale:
                    self.delete(bucket, key)
                if stale:
                    log.info("removed %d stale probe objects under s3://%s/%s", len(stale), bucket, prefix)
        except StorageError as err:
            log.debug("could not sweep old probe objects under s3://%s/%s: %s", bucket, prefix, err)

    @staticmethod
    def _refused(call: Any) -> bool:
        try:
            call()
        except StorageError as err:
            if err.code in PRECONDITION_CODES:
                return True
            if err.code in ("NotImplemented", "InvalidArgument", "InvalidRequest", "501"):
                return False
            raise
        return False


def _batch_errors(
    bucket: str, items: list[tuple[str, str | None]], deleted: set[str], failed: list[tuple[str, str, str]]
) -> dict[str, StorageError]:
    """Per-key errors of a DeleteObjects answer; a key in neither list is unconfirmed (never assume success)."""
    errors = {
        key: StorageError("DeleteObjects", bucket, key, code, message, retryable=code in RETRYABLE_CODES)
        for key, code, message in failed
    }
    for key, _ in items:
        if key not in deleted and key not in errors:
            errors[key] = StorageError(
                "DeleteObjects", bucket, key, "NotConfirmed", "not in the response", retryable=True
            )
    return errors


def _info_from_headers(h: dict[str, str]) -> ObjectInfo:
    """``ObjectInfo`` from raw HEAD headers (lower-cased names), as botocore would have parsed them."""
    bucket_key = h.get("x-amz-server-side-encryption-bucket-key-enabled")
    return ObjectInfo(
        etag=quoted(h.get("etag", "")),
        size=int(h.get("content-length", "0")),
        storage_class=h.get("x-amz-storage-class", "STANDARD"),
        content_type=h.get("content-type", ""),
        metadata={k[len("x-amz-meta-") :]: v for k, v in h.items() if k.startswith("x-amz-meta-")},
        sse=h.get("x-amz-server-side-encryption"),
        sse_kms_key_id=h.get("x-amz-server-side-encryption-aws-kms-key-id"),
        bucket_key_enabled=None if bucket_key is None else bucket_key.lower() == "true",
    )
