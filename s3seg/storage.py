"""The only module that talks to S3: builds clients and wraps the calls s3seg needs.

Owns: client construction from a picklable ``ClientSpec`` (never a client or credentials across a process
boundary), the explicit botocore retry configuration, the handful of S3 calls (list, get, head, copy,
multipart copy, delete, batch delete, put), and the translation of every botocore error into ``StorageError``
(here and nowhere else). Every call goes through ``Storage._request``: the lean path first where it applies,
then botocore for whatever it hands back, then the translation. Which layer retries what: ``s3errors``.

Must not: decide what a result means for a move (``moves``), or what a store's answers say about its
capabilities (``probe``).
"""

from __future__ import annotations

import email.utils
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

import boto3
import botocore.config
import botocore.configprovider
import botocore.exceptions
import botocore.loaders
import botocore.session

from s3seg.errors import StorageError, UsageError
from s3seg.leanpath import LeanPath, UseBotocore, copy_params, parse_timestamp
from s3seg.objects import CopyArgs, CopyConditions, Listed, ListPage, MultipartCopyArgs, ObjectInfo, Stamped, quoted
from s3seg.s3errors import NOT_FOUND_CODES, RETRYABLE_CODES

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)
T = TypeVar("T")

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


# botocore >= 1.34's switch for AWS_ENDPOINT_URL* and the config file's endpoint_url (not in the type stubs).
_NO_CONFIGURED_ENDPOINTS: dict[str, Any] = {"ignore_configured_endpoint_urls": True}


_loader: Any = None


def _shared_loader(core: Any) -> Any:
    """This process's one botocore data loader: every client after the first reuses its parsed service model
    (~0.15 s of CPU per client otherwise; an apply's parent builds two before its first request, preflight's
    and the run's)."""
    global _loader
    if _loader is None:
        _loader = botocore.loaders.create_loader(core.get_config_variable("data_path"))
    return _loader


def _no_profile(spec: ClientSpec, core: Any) -> UsageError:
    return UsageError(
        f"AWS profile {spec.profile or core.profile!r} is not in the AWS config or credentials file "
        "(from --profile, <profile> or AWS_PROFILE): check its name"
    )


def make_client(spec: ClientSpec) -> S3Client:
    """A boto3 S3 client built in the calling process from the standard credential chain."""
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    try:
        loader = _shared_loader(core)  # reads the config: a missing AWS_PROFILE is refused here already
        core.register_component("data_loader", loader)
        session = boto3.session.Session(botocore_session=core, profile_name=spec.profile, region_name=spec.region)
        paths = loader.search_paths  # boto3 appends its data folder for each session: once is enough
        while len(paths) > 1 and paths[-1] in paths[:-1]:
            paths.pop()
    except botocore.exceptions.ProfileNotFound:
        raise _no_profile(spec, core) from None
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
    except botocore.exceptions.ProfileNotFound:  # read first here when the session did not need its config yet
        raise _no_profile(spec, core) from None
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


def is_xml_safe(key: str) -> bool:
    return _XML_UNSAFE.search(key) is None


class Storage:
    """A thin, typed facade over one boto3 client (thread-safe, like the client).

    With ``lean``, the per-object calls (CopyObject, HeadObject, DeleteObject, DeleteObjects) and the listing
    (ListObjectsV2) go through the lean path first; whatever it hands back (``UseBotocore``) is sent again
    through botocore, here.
    """

    def __init__(self, client: S3Client, lean: LeanPath | None = None) -> None:
        self.client = client
        self.lean = lean

    def _request(
        self,
        op: str,
        bucket: str,
        key: str,
        botocore_call: Callable[[], T],
        lean_call: Callable[[LeanPath], T] | None = None,
        *,
        answers: frozenset[str] = frozenset(),
    ) -> T:
        """One S3 request: through the lean path (``lean_call``) if there is one and it is on, else (or for
        whatever it hands back) through botocore (``botocore_call``), every botocore error translated.

        ``answers``: error codes that are a definite answer to this request (a HEAD's 404), not a failure: for the
        hand-back bookkeeping botocore then succeeded where the lean path did not. They are still raised.
        """
        why: UseBotocore | None = None
        lean = self.lean
        if lean_call is not None and lean is not None and lean.enabled:
            try:
                return lean_call(lean)
            except UseBotocore as exc:
                why = exc
        try:
            result = botocore_call()
        except _BOTO_ERRORS as exc:
            err = translate(exc, op, bucket, key)
            if why is not None:
                self._after_fallback(why, None if err.code in answers else err)
            raise err from None
        if why is not None:
            self._after_fallback(why, None)
        return result

    def _after_fallback(self, why: UseBotocore, err: StorageError | None) -> None:
        """Bookkeeping once botocore answered (``err`` None: successfully) a request the lean path handed over."""
        if err is not None and why.maybe_applied:
            err.retried = True  # an earlier lean attempt may have been applied: same rule as botocore retries
        if err is None and why.suspect and self.lean is not None:
            self.lean.disable(f"botocore succeeded where the lean path was refused ({why})")

    # -- reading ----------------------------------------------------------------------------------------------
    def list_pages(
        self, bucket: str, prefix: str, *, delimiter: str = "", page_size: int = 1000, start_after: str = ""
    ) -> Iterator[list[Listed]]:
        """Yield listing pages of at most ``page_size`` objects, in key order (common prefixes dropped).

        Each page is one ListObjectsV2 request, the lean way first (``LeanPath.list_objects_v2``): botocore
        parses a page's XML twice and then by its model, which made half a plan's CPU. A page handed back is
        asked again of botocore, with the same token. Both ways give the same ``Listed`` objects.
        """
        token = ""
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
            if delimiter:
                kwargs["Delimiter"] = delimiter
            if token:
                kwargs["ContinuationToken"] = token
            elif start_after:
                kwargs["StartAfter"] = start_after

            def botocore_list(kwargs: dict[str, Any] = kwargs) -> ListPage:
                return _page(self.client.list_objects_v2(**kwargs))

            def lean_list(lean: LeanPath, token: str = token) -> ListPage:
                return lean.list_objects_v2(
                    bucket, prefix, delimiter=delimiter, max_keys=page_size,
                    start_after="" if token else start_after, continuation_token=token,
                )  # fmt: skip

            page = self._request("ListObjectsV2", bucket, prefix, botocore_list, lean_list)
            yield page.objects
            if not page.truncated:
                return
            if not page.next_token or page.next_token == token:
                # A store bug: stopping here would end the listing early without a word (a plan missing keys),
                # asking the same token again would loop. Refused, naming the store's answer.
                raise StorageError(
                    "ListObjectsV2", bucket, prefix, "MalformedResponse",
                    "the store said the listing is truncated but gave no new continuation token",
                )  # fmt: skip
            token = page.next_token

    def get_bytes(self, bucket: str, key: str) -> bytes:
        """The whole body of a small object (an S3 Inventory manifest.json, say)."""
        return b"".join(self.get_chunks(bucket, key))

    def get_chunks(self, bucket: str, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """The body of an object as a stream of chunks: flat memory for large files (inventory data files)."""
        body = self._request("GetObject", bucket, key, lambda: self.client.get_object(Bucket=bucket, Key=key)["Body"])
        try:
            while chunk := self._request("GetObject", bucket, key, lambda: body.read(chunk_size)):
                yield chunk
        finally:
            self._request("GetObject", bucket, key, body.close)

    def same_content(
        self, a_bucket: str, a_key: str, b_bucket: str, b_key: str, size: int, chunk: int = 16 * 1024 * 1024
    ) -> bool:
        """True if both objects hold the same ``size`` bytes, compared range by range (flat memory)."""
        for start in range(0, size, chunk):
            rng = f"bytes={start}-{min(start + chunk, size) - 1}"
            parts = []
            for bucket, key in ((a_bucket, a_key), (b_bucket, b_key)):
                try:
                    parts.append(self._get_body(bucket, key, Range=rng))
                except StorageError as err:
                    if err.code in NOT_FOUND_CODES:
                        return False
                    raise
            if parts[0] != parts[1]:
                return False
        return True

    def _get_body(self, bucket: str, key: str, **kwargs: Any) -> bytes:
        return self._request(
            "GetObject", bucket, key, lambda: self.client.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()
        )

    def head(self, bucket: str, key: str, *, full: bool = False) -> ObjectInfo | None:
        """HEAD an object; None if it does not exist. ``full``: with every header botocore parses (``raw``)."""

        def lean_head(lean: LeanPath) -> ObjectInfo | None:
            headers = lean.head(bucket, key)
            return None if headers is None else _info_from_headers(headers)

        try:
            return self._request(
                "HeadObject", bucket, key, lambda: _info(self.client.head_object(Bucket=bucket, Key=key)),
                None if full else lean_head, answers=NOT_FOUND_CODES,
            )  # fmt: skip
        except StorageError as err:
            if err.code in NOT_FOUND_CODES:
                return None
            raise

    def tagging(self, bucket: str, key: str) -> str:
        """The object's tags as a URL-encoded query string (what CreateMultipartUpload takes)."""
        from urllib.parse import urlencode

        r = self._request(
            "GetObjectTagging", bucket, key, lambda: self.client.get_object_tagging(Bucket=bucket, Key=key)
        )
        return urlencode([(t["Key"], t["Value"]) for t in r.get("TagSet", [])])

    # -- writing ----------------------------------------------------------------------------------------------
    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, **args: Unpack[CopyArgs]) -> str:
        """CopyObject keeping metadata, Content-Type and tags; returns the new object's ETag.

        ``CopySource`` is a dict, never a string: botocore then encodes the key exactly once, so keys with
        ``+``, ``%2B``, ``?versionId=`` or unicode copy the right object (S3-FACTS "Copy").
        """
        kwargs: dict[str, Any] = {
            "Bucket": dst_bucket,
            "Key": dst_key,
            "CopySource": {"Bucket": src_bucket, "Key": src_key},
            **copy_params(args),
        }
        sse = args.get("sse")
        if sse:
            kwargs.update(sse)
        conditions = CopyConditions(
            if_match=args["if_match"], if_none_match=args["if_none_match"], storage_class=args["storage_class"]
        )

        def lean_copy(lean: LeanPath) -> str:
            return lean.copy(src_bucket, src_key, dst_bucket, dst_key, **conditions)

        def botocore_copy() -> str:
            return str(self.client.copy_object(**kwargs)["CopyObjectResult"]["ETag"])

        # The lean path sends no SSE fields: a copy that must carry them goes through botocore only.
        return quoted(self._request("CopyObject", dst_bucket, dst_key, botocore_copy, None if sse else lean_copy))

    def multipart_copy(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, **args: Unpack[MultipartCopyArgs]
    ) -> str:
        """Copy an object too large for CopyObject (or above the configured threshold) part by part.

        A multipart copy does not carry metadata or tags by itself: they are sent explicitly from ``source``'s
        HEAD and its tagging. Every part copy is conditioned on the planned source ETag, so a source changed
        mid-way fails the copy instead of stitching two versions together. On any failure the upload is
        aborted, leaving no destination object.
        """
        source, part_size, if_match, sse = args["source"], args["part_size"], args["if_match"], args.get("sse")
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
        created = self._request(
            "CreateMultipartUpload", dst_bucket, dst_key, lambda: self.client.create_multipart_upload(**create)
        )
        upload_id = created["UploadId"]
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
                r = self._request("UploadPartCopy", dst_bucket, dst_key, partial(self.client.upload_part_copy, **part))
                parts.append({"PartNumber": number, "ETag": r["CopyPartResult"]["ETag"]})
            complete: dict[str, Any] = {
                "Bucket": dst_bucket,
                "Key": dst_key,
                "UploadId": upload_id,
                "MultipartUpload": {"Parts": parts},
            }
            if args["if_none_match"]:
                complete["IfNoneMatch"] = "*"
            done = self._request(
                "CompleteMultipartUpload",
                dst_bucket,
                dst_key,
                lambda: self.client.complete_multipart_upload(**complete),
            )
            return quoted(str(done["ETag"]))
        except BaseException:
            try:
                self._request(
                    "AbortMultipartUpload", dst_bucket, dst_key,
                    lambda: self.client.abort_multipart_upload(Bucket=dst_bucket, Key=dst_key, UploadId=upload_id),
                )  # fmt: skip
            except StorageError:  # best effort; a stale upload holds no visible object
                log.warning("could not abort multipart upload %s for s3://%s/%s", upload_id, dst_bucket, dst_key)
            raise

    def delete(self, bucket: str, key: str, *, if_match: str | None = None) -> None:
        """DeleteObject, conditioned on the ETag where given (never by VersionId: that destroys data)."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if if_match:
            kwargs["IfMatch"] = if_match

        def botocore_delete() -> None:
            self.client.delete_object(**kwargs)

        self._request(
            "DeleteObject", bucket, key, botocore_delete, lambda lean: lean.delete(bucket, key, if_match=if_match)
        )

    def delete_batch(self, bucket: str, items: list[tuple[str, str | None]]) -> dict[str, StorageError]:
        """DeleteObjects for up to 1,000 (key, etag-or-None); returns the per-key errors (empty: all deleted).

        S3 answers 200 even when keys fail, so every ``Errors`` entry is turned into a ``StorageError``. A key
        missing from both ``Deleted`` and ``Errors`` is reported as an error too: never assume success.
        """
        if not items:
            return {}
        objects: list[dict[str, Any]] = []
        for key, etag in items:
            obj: dict[str, Any] = {"Key": key}
            if etag:
                obj["ETag"] = etag
            objects.append(obj)

        def botocore_delete() -> tuple[set[str], list[tuple[str, str, str]]]:
            r = self.client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": False})  # type: ignore[typeddict-item]
            failed = [(e.get("Key", ""), e.get("Code", "Unknown"), e.get("Message", "")) for e in r.get("Errors", ())]
            return {str(d.get("Key")) for d in r.get("Deleted", ())}, failed

        try:
            deleted, failed = self._request(
                "DeleteObjects", bucket, items[0][0], botocore_delete, lambda lean: lean.delete_objects(bucket, items)
            )
        except StorageError as err:  # the whole request failed: every key is unconfirmed
            return {key: err for key, _ in items}
        return _batch_errors(bucket, items, deleted, failed)

    def put(
        self, bucket: str, key: str, body: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        """PutObject of a small body; ``if_none_match`` creates only, ``if_match`` replaces only that version."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body}
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match:
            kwargs["IfMatch"] = if_match
        return quoted(str(self._request("PutObject", bucket, key, lambda: self.client.put_object(**kwargs))["ETag"]))

    def read_small(self, bucket: str, key: str) -> Stamped | None:
        """A small object's body with its ETag, LastModified and the store's own clock (the answer's Date);
        None if absent. What a lease needs to judge age by the store's clock, never by ours."""

        def get() -> tuple[Any, bytes]:
            r = self.client.get_object(Bucket=bucket, Key=key)
            return r, r["Body"].read()

        try:
            r, body = self._request("GetObject", bucket, key, get)
        except StorageError as err:
            if err.code in NOT_FOUND_CODES:
                return None
            raise
        date = r.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date", "")
        try:
            server_now = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            server_now = datetime.now(UTC)  # a store without a Date header: our clock is all there is
        return Stamped(body=body, etag=quoted(str(r["ETag"])), last_modified=r["LastModified"], server_now=server_now)


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


def _page(r: Any) -> ListPage:
    """``ListPage`` from botocore's ListObjectsV2 answer (what ``leanpath.parse_list_result`` reads alike)."""
    objects = [
        Listed(
            key=obj["Key"],
            size=obj["Size"],
            etag=quoted(obj["ETag"]),
            storage_class=obj.get("StorageClass", "STANDARD"),
            last_modified=obj["LastModified"].isoformat(),
        )
        for obj in r.get("Contents", ())
    ]
    return ListPage(
        objects=objects, truncated=bool(r.get("IsTruncated")), next_token=r.get("NextContinuationToken") or ""
    )


def _info(r: Any) -> ObjectInfo:
    """``ObjectInfo`` from botocore's HeadObject answer, every parsed header kept (``raw``)."""
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
