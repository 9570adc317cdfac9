"""The plain records of what S3 says about objects, and the one canonical form of an ETag.

Owns: ``Listed`` (one object of a listing page or an S3 Inventory row: what ``listing``, ``inventory``,
``planner`` and ``verify`` pass around), ``ListPage`` (one ListObjectsV2 answer, from either request path),
``ObjectInfo`` (what HEAD says: what ``moves`` decides by), ``Stamped`` (a small object read with the store's
clock: what ``lease`` judges age by), ``CopyConditions`` / ``CopyArgs`` / ``MultipartCopyArgs`` (the keyword
arguments of a copy, one definition for the ``store.Storage`` protocol and both request paths), ``paged``
(objects -> pages of a size) and ``quoted``.

Must not: import boto3 or talk to S3 (``storage`` fills these records), or import anything from s3seg.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NotRequired, TypedDict


class CopyConditions(TypedDict):
    """What a CopyObject asks beside its source and destination (the lean path's copy takes exactly these)."""

    if_match: str | None  # CopySourceIfMatch: copy only this version of the source
    if_none_match: bool  # IfNoneMatch="*": do not overwrite an existing destination
    storage_class: str  # the destination's storage class; "" keeps the default


class CopyArgs(CopyConditions):
    """A copy's keyword arguments (``Storage.copy``): the conditions, and SSE fields to send where needed."""

    sse: NotRequired[dict[str, Any] | None]


class MultipartCopyArgs(TypedDict):
    """A multipart copy's keyword arguments (``Storage.multipart_copy``)."""

    source: ObjectInfo  # a full HEAD of the source: its headers, metadata and tags are re-sent
    if_match: str | None  # on every part copy
    if_none_match: bool  # on the completion
    part_size: int
    sse: NotRequired[dict[str, Any] | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Listed:
    """One object from a listing page."""

    key: str
    size: int
    etag: str
    storage_class: str
    last_modified: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ListPage:
    """One ListObjectsV2 answer as ``Storage.list_pages`` reads it, from either request path: the objects (common
    prefixes dropped), and where the listing goes on (``next_token``, "" for none)."""

    objects: list[Listed]
    truncated: bool
    next_token: str


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


def paged(objects: Iterable[Listed], size: int) -> Iterator[list[Listed]]:
    """The same objects, in the same order, in pages of exactly ``size`` (the last may be shorter)."""
    page: list[Listed] = []
    for obj in objects:
        page.append(obj)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def quoted(etag: str) -> str:
    """ETags in one canonical form, quoted as S3 sends them (SeaweedFS drops the quotes on copy results)."""
    return etag if etag.startswith('"') or etag.startswith('W/"') else f'"{etag}"'
