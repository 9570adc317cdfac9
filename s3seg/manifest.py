"""The plan on disk: a JSONL manifest of moves, with a header and a tamper-evident trailer.

Layout (one JSON object per line)::

    {"type": "header", "format": 1, "tool": "s3seg", "version": ..., "created": ..., "now": ..., ...}
    {"id": 1, "src_bucket": ..., "src_key": ..., "dst_bucket": ..., "dst_key": ..., "size": ..., ...}
    ...
    {"type": "trailer", "entries": N, "sha256": "<sha256 of the entry lines' bytes>", "header_sha256": ...}

Entries are numbered 1..N in order; the trailer's count and digests (of the entry lines, and of the header
line, whose endpoint and config apply obeys) make a truncated, edited, reordered or duplicated manifest
detectable before anything touches S3. A manifest is written to a temporary file and renamed into place only
once complete, so a crashed ``plan`` never leaves a plausible-looking half manifest.

Compressed manifests: a path ending in ``.gz`` is written gzip-compressed (stdlib ``gzip``, one member); the
reader recognises gzip by its magic bytes, whatever the name, and decompresses as it streams. Every digest
(trailer, header, and the SHA-256 a journal binds to) is over the UNCOMPRESSED lines, so ``gunzip`` of a plan
keeps its journal valid, and a truncated or corrupt compressed file is refused like a truncated plain one.

Must not: know about S3 clients, the journal or execution.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import stat
import tempfile
import weakref
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from s3seg.errors import ManifestError, ManifestWriteError, os_reason

FORMAT = 1
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_TAIL = 1 << 16  # bytes kept from the end of the stream: the trailer line is about 250 bytes

_NAMES: tuple[str, ...]
_TYPES: tuple[type, ...]
_FIELDS: dict[str, type] = {
    "id": int,
    "src_bucket": str,
    "src_key": str,
    "dst_bucket": str,
    "dst_key": str,
    "size": int,
    "etag": str,
    "storage_class": str,
    "last_modified": str,
    "reason": str,
}


_NAMES, _TYPES = tuple(_FIELDS), tuple(_FIELDS.values())


def check_entry(data: dict[str, Any]) -> None:
    """Raise ``ValueError`` unless ``data`` is a well-formed entry (what ``Move.from_dict`` accepts), at C speed."""
    if tuple(map(type, map(data.get, _NAMES))) != _TYPES:
        for name, typ in _FIELDS.items():
            if type(data.get(name)) is not typ:
                raise ValueError(f"field {name!r} missing or not a {typ.__name__}")
    if type(data.get("detail", "")) is not str:
        raise ValueError("field 'detail' is not a string")


@dataclass(frozen=True, slots=True, kw_only=True)
class Move:
    """One planned move of one object. ``etag`` and ``size`` are as listed at plan time."""

    id: int
    src_bucket: str
    src_key: str
    dst_bucket: str
    dst_key: str
    size: int
    etag: str
    storage_class: str = "STANDARD"
    last_modified: str = ""
    reason: str = "matched"
    detail: str = ""

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "id": self.id,
            "src_bucket": self.src_bucket,
            "src_key": self.src_key,
            "dst_bucket": self.dst_bucket,
            "dst_key": self.dst_key,
            "size": self.size,
            "etag": self.etag,
            "storage_class": self.storage_class,
            "last_modified": self.last_modified,
            "reason": self.reason,
        }
        if self.detail:
            data["detail"] = self.detail
        return compact_json(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Move:
        for name, typ in _FIELDS.items():
            if type(data.get(name)) is not typ:
                raise ValueError(f"field {name!r} missing or not a {typ.__name__}")
        detail = data.get("detail", "")
        if not isinstance(detail, str):
            raise ValueError("field 'detail' is not a string")
        return cls(detail=detail, **{name: data[name] for name in _FIELDS})


# ensure_ascii=False keeps unicode keys readable; control characters are still escaped by json. One encoder
# for every line: ``json.dumps`` with any non-default argument builds a new one per call (~1 us a move).
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def compact_json(data: dict[str, Any]) -> str:
    """One JSON line as s3seg writes them (manifest lines, journal records): compact, unicode kept."""
    return _COMPACT.encode(data)


def _encode(text: str) -> bytes:
    # A lone surrogate (a non-UTF-8 byte of a file name, e.g. the config path in the header) becomes a JSON
    # \udcXX escape: valid JSON that reads back as the same string, instead of an encoding error.
    return text.encode("utf-8", "backslashreplace") + b"\n"


class ManifestWriter:
    """Streams moves into a private temporary file beside ``path``; ``close()`` writes the trailer, fsyncs and
    renames it onto ``path``.

    The temporary file is created with ``O_EXCL`` under a unique name (``tempfile.mkstemp`` in the target's
    directory, so the rename stays on one file system): two plans writing manifests into one directory at the
    same moment never share it. Every ``OSError`` (missing directory, full disk, read-only file system) is
    raised as ``ManifestWriteError`` naming ``path``; ``abort()`` never raises and removes the partial file.
    """

    def __init__(self, path: str, header: dict[str, Any]) -> None:
        self.path = path
        self._renamed = False
        if os.path.exists(path) and not os.path.isfile(path):
            # os.replace would swap a device (run as root: /dev/null!) or fail late on a directory.
            what = "a directory" if os.path.isdir(path) else "not a regular file"
            raise ManifestWriteError(path, None, f"cannot write the manifest: it is {what}; choose another -o")
        directory, name = os.path.split(os.path.abspath(path))
        with self._guard():
            fd, self._tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        try:
            self._raw: IO[bytes] = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            _unlink(self._tmp)
            raise
        self.compressed = path.endswith(".gz")
        self._file: IO[bytes] = (
            gzip.GzipFile(filename="", fileobj=self._raw, mode="wb", compresslevel=6, mtime=0)  # type: ignore[assignment]
            if self.compressed
            else self._raw
        )
        self._digest = hashlib.sha256()
        self.count = 0
        try:
            self._header_sha256 = self._write_line({"type": "header", "format": FORMAT, **header})
        except BaseException:
            self.abort()
            raise

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise ManifestWriteError(
                self.path, None, f"cannot write the manifest: {os_reason(exc, self.path)}; nothing was left behind"
            ) from None

    def _write_line(self, data: dict[str, Any]) -> str:
        line = _encode(compact_json(data))
        with self._guard():
            self._file.write(line)
        return hashlib.sha256(line).hexdigest()

    def add(self, move: Move) -> None:
        if move.id != self.count + 1:
            raise ValueError(f"manifest ids must be consecutive: expected {self.count + 1}, got {move.id}")
        line = _encode(move.to_json())
        self._digest.update(line)
        with self._guard():
            self._file.write(line)
        self.count += 1

    @property
    def partial_path(self) -> str:
        """The file being written (complete up to the last ``flush()``), for checks before ``close()``."""
        return self._tmp

    def flush(self) -> None:
        """Make everything added so far readable in ``partial_path`` (``read_lines`` reads a partial gzip)."""
        with self._guard():
            if isinstance(self._file, gzip.GzipFile):
                self._file.flush(zlib.Z_SYNC_FLUSH)
            self._raw.flush()

    def close(self) -> str:
        """Finish the manifest; returns the SHA-256 of the whole file (what a journal binds to).

        On an ``OSError`` the partial file is removed before ``ManifestWriteError`` is raised.
        """
        try:
            self._write_line(
                {
                    "type": "trailer",
                    "entries": self.count,
                    "sha256": self._digest.hexdigest(),
                    "header_sha256": self._header_sha256,
                }
            )
            with self._guard():
                if self._file is not self._raw:
                    self._file.close()  # the gzip trailer; the raw file stays open
                self._raw.flush()
                os.fsync(self._raw.fileno())
                self._raw.close()
                digest = content_sha256(self._tmp)  # before the rename: the digest of exactly what we wrote
                os.replace(self._tmp, self.path)
                self._renamed = True
                fsync_dir(self.path)
                return digest
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the partial manifest (a failed plan leaves nothing behind). Never raises an ``OSError``."""
        for f in (self._file, self._raw):
            with contextlib.suppress(OSError, ValueError):
                f.close()  # a full disk fails the final flush again: the bytes are dropped anyway
        for path in (self._tmp, self.path) if self._renamed else (self._tmp,):
            _unlink(path)


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def fsync_dir(path: str) -> None:
    """Make a created or renamed file's directory entry durable (a file fsync alone does not)."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def content_sha256(path: str) -> str:
    """SHA-256 of a manifest's uncompressed lines: of the file itself when plain, of its content when gzip."""
    digest = hashlib.sha256()
    for chunk in read_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def read_chunks(path: str, *, partial: bool = False) -> Iterator[bytes]:
    """A manifest file's uncompressed bytes in chunks. ``partial``: a gzip stream still being written (flushed,
    not finished) ends without complaint."""
    with open(path, "rb") as f:
        chunks: Iterable[bytes] = iter(lambda: f.read(_CHUNK), b"")
        first = next(iter(chunks), b"")
        if first[:2] == GZIP_MAGIC:
            yield from _gunzip(_prepend(first, chunks), partial=partial)
        else:
            yield first
            yield from chunks


def read_lines(path: str, *, partial: bool = False) -> Iterator[bytes]:
    """A manifest file's uncompressed lines (plain or gzip), read with a small buffer. ``partial``: a gzip
    stream still being written (flushed, not finished) ends without complaint."""
    with open(path, "rb") as f:
        magic = f.read(2)
        f.seek(0)
        if magic != GZIP_MAGIC:
            yield from f
            return
        with gzip.GzipFile(fileobj=f) as g:
            try:
                yield from g
            except EOFError:
                if not partial:
                    raise


def _prepend(first: bytes, rest: Iterable[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


class TruncatedGzip(ValueError):
    """The compressed stream ended inside a gzip member."""


def _gunzip(chunks: Iterable[bytes], *, partial: bool = False) -> Iterator[bytes]:
    """Decompress a gzip stream of one or more members, at most ``_CHUNK`` bytes of output at a time (a small
    file that inflates hugely costs no memory). Raises ``zlib.error`` on corrupt data and ``TruncatedGzip`` if
    the stream ends inside a member (unless ``partial``)."""
    d = zlib.decompressobj(wbits=31)
    fed = False
    for chunk in chunks:
        data = chunk
        while data:
            if d.eof:  # another member follows
                d = zlib.decompressobj(wbits=31)
            fed = True
            out = d.decompress(data, _CHUNK)
            if out:
                yield out
            data = d.unused_data if d.eof else d.unconsumed_tail
    if fed and not d.eof:
        if not partial:
            raise TruncatedGzip("the compressed manifest ends in the middle of its gzip stream")
        yield d.flush()


def _split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) != -1:
            yield pending[start : end + 1]
            start = end + 1
        pending = pending[start:]
    if pending:
        yield pending


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What a full verification pass learned about a manifest."""

    header: dict[str, Any]
    entries: int
    sha256: str  # of the whole file (uncompressed)
    buckets: frozenset[tuple[str, str]] = frozenset()  # (src_bucket, dst_bucket) pairs; empty after a light verify


class Manifest:
    """A manifest on disk, opened once: ``verify()`` reads it completely; ``moves()`` then streams the entries.

    The file is opened on the first ``verify()`` and every later read (another ``verify()``, each ``moves()``)
    goes through that same descriptor, with positioned reads (``os.pread``: several ``moves()`` streams may be
    open at once). So what is verified is exactly what is executed: renaming or replacing the path afterwards
    (another plan, an editor's save-as-new-file) cannot change the moves applied. A change written into the
    same file in place is caught by comparing its size and modification time with what ``verify()`` saw, at
    the start and the end of every ``moves()`` stream, and by re-hashing the entries as they stream.

    Nothing is ever held in memory per entry, so a manifest of any size costs flat memory.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._info: ManifestInfo | None = None
        self._fd: int | None = None
        self._stat: tuple[int, int, int, int] | None = None  # (dev, ino, size, mtime_ns) when verified
        self._closer: weakref.finalize[Any, Any] | None = None
        self._entries_sha256 = ""
        self._claimed: frozenset[tuple[str, str]] | None = None  # bucket pairs taken by verify_bound()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the descriptor (also done when the object is collected)."""
        if self._closer is not None:
            self._closer()
        self._fd = None

    @property
    def info(self) -> ManifestInfo:
        if self._info is None:
            self._info = self.verify()
        return self._info

    def _error(self, line: int | None, message: str) -> ManifestError:
        return ManifestError(self.path, line, message)

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise self._error(None, f"cannot read manifest: {exc.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise self._error(None, "not a regular file")
        self._fd = fd
        self._closer = weakref.finalize(self, os.close, fd)
        return fd

    def _identity(self, fd: int) -> tuple[int, int, int, int]:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _chunks(self, fd: int) -> Iterator[bytes]:
        """The file's bytes, read through ``fd`` from offset 0 with positioned reads (no shared offset)."""
        offset = 0
        while chunk := os.pread(fd, _CHUNK, offset):
            offset += len(chunk)
            yield chunk

    def _content(self, fd: int) -> Iterator[bytes]:
        """The file's uncompressed bytes in chunks; a gzip file is recognised by its magic and decompressed."""
        if os.pread(fd, 2, 0) != GZIP_MAGIC:
            yield from self._chunks(fd)
            return
        try:
            yield from _gunzip(self._chunks(fd))
        except TruncatedGzip:
            raise self._error(None, "the compressed manifest is truncated (was `s3seg plan` interrupted?)") from None
        except zlib.error as exc:
            raise self._error(None, f"the compressed manifest is corrupt ({exc}); plan again") from None

    def _lines(self, fd: int) -> Iterator[bytes]:
        """The file's (uncompressed) lines."""
        return _split_lines(self._content(fd))

    def _entry_blocks(self, fd: int, entries: int) -> Iterator[tuple[int, int, bytes]]:
        """The entry lines as blocks of whole lines: ``(id of the first line, number of lines, bytes)``.

        The header line is cut off the front and the trailer off the back (by count: ``verify()`` proved there
        are exactly ``entries`` entries), so the blocks concatenated are exactly the bytes the trailer's entries
        digest covers. One block per chunk read (about 1 MiB), found with C-level ``rfind``/``count``.
        """
        pending = b""
        first = 0  # 0: the header is not passed yet
        for chunk in self._content(fd):
            buf = pending + chunk if pending else chunk
            end = buf.rfind(b"\n") + 1
            block, pending = buf[:end], buf[end:]
            if not block:
                continue
            if first == 0:
                block, first = block[block.find(b"\n") + 1 :], 1
            n = block.count(b"\n")
            if first + n > entries:  # the trailer starts in this block
                n = entries - first + 1
                block = block[: _end_of_line(block, n)]
                if n:
                    yield first, n, block
                return
            if n:
                yield first, n, block
            first += n

    def verify(self, *, entries_checked: bool = True) -> ManifestInfo:
        """Check the whole file: header, ids 1..N in order, every entry well-formed, trailer count and digest.

        Raises ``ManifestError`` naming the line; a manifest that passes has not been truncated or edited.
        ``entries_checked=False`` (``status``, which executes nothing) hashes and counts every line and checks
        each entry's id from its first bytes, without parsing the entries as JSON: the digests still prove the
        file is the one plan wrote; ``moves()`` after such a verify checks every entry it yields.
        """
        fd = self._open()
        before = self._identity(fd)
        whole = hashlib.sha256()
        entries = hashlib.sha256()
        header: dict[str, Any] | None = None
        header_sha256 = ""
        trailer: dict[str, Any] | None = None
        count = 0
        pairs: set[tuple[str, str]] = set()
        for lineno, raw in enumerate(self._lines(fd), start=1):
            whole.update(raw)
            if trailer is not None:
                raise self._error(lineno, "data after the trailer: the manifest was edited or concatenated")
            if not raw.endswith(b"\n"):
                raise self._error(lineno, "last line is incomplete: the manifest is truncated")
            if not entries_checked and lineno > 1 and raw.startswith(b'{"id":%d,' % (count + 1)):
                entries.update(raw)  # the digest, checked against the trailer, vouches for the rest of the line
                count += 1
                continue
            data = self._parse(raw, lineno)
            if lineno == 1:
                header = self._checked_header(data)
                header_sha256 = hashlib.sha256(raw).hexdigest()
                continue
            if data.get("type") == "trailer":
                trailer = data
                continue
            try:
                check_entry(data)
            except ValueError as exc:
                raise self._error(lineno, f"malformed entry: {exc}") from None
            if data["id"] != count + 1:
                raise self._error(
                    lineno, f"entry id {data['id']} out of sequence (expected {count + 1}): lines were edited"
                )
            pairs.add((data["src_bucket"], data["dst_bucket"]))
            entries.update(raw)
            count += 1
        if header is None:
            raise self._error(None, "empty file: not an s3seg manifest")
        self._check_trailer(trailer, count, entries.hexdigest(), header_sha256)
        if self._identity(fd) != before:
            raise self._error(None, "the manifest changed while it was being verified; try again")
        self._stat = before
        self._entries_sha256 = entries.hexdigest()
        self._claimed = None
        self._info = ManifestInfo(header=header, entries=count, sha256=whole.hexdigest(), buckets=frozenset(pairs))
        return self._info

    def verify_bound(self, sha256: str, buckets: Iterable[tuple[str, str]]) -> ManifestInfo | None:
        """A resume's verify, for a file a journal is bound to: ``None`` unless its content SHA-256 is ``sha256``.

        The whole (uncompressed) file is hashed chunk by chunk and its lines counted with ``bytes.count``; only
        the header and the trailer are parsed (the header digest and the trailer's count are checked as in
        ``verify()``). The entries digest is taken from the trailer: it is implied, because a journal is bound
        (``commands.verify_for_run``) only to bytes that passed the full ``verify()`` once, and these are those
        bytes. ``buckets`` (the pairs that verify found, from the journal's header) become
        ``ManifestInfo.buckets``, and ``moves()`` then refuses any entry whose pair is not among them; it also
        parses and checks every entry it yields and re-hashes the entries against the trailer, so even with a
        hand-edited journal nothing unchecked is executed. Raises ``ManifestError`` on a malformed header or
        trailer (the caller then does the full verify, for the usual message).
        """
        fd = self._open()
        before = self._identity(fd)
        whole = hashlib.sha256()
        newlines = 0
        head = tail = b""
        for chunk in self._content(fd):
            whole.update(chunk)
            newlines += chunk.count(b"\n")
            if b"\n" not in head and len(head) < _CHUNK * 16:
                head += chunk
            tail = (tail + chunk[-_TAIL:])[-_TAIL:]
        if whole.hexdigest() != sha256:
            return None
        first = head[: head.find(b"\n") + 1]
        if not first or not tail.endswith(b"\n"):
            raise self._error(None, "the manifest is truncated")
        header = self._checked_header(self._parse(first, 1))
        trailer = self._parse(tail[tail.rfind(b"\n", 0, len(tail) - 1) + 1 :], newlines)
        if trailer.get("type") != "trailer":
            raise self._error(newlines, "the last line is not the trailer")
        entries_sha256 = str(trailer.get("sha256"))
        self._check_trailer(trailer, newlines - 2, entries_sha256, hashlib.sha256(first).hexdigest())
        if self._identity(fd) != before:
            raise self._error(None, "the manifest changed while it was being verified; try again")
        self._stat = before
        self._entries_sha256 = entries_sha256
        self._claimed = frozenset(buckets)
        self._info = ManifestInfo(header=header, entries=newlines - 2, sha256=sha256, buckets=self._claimed)
        return self._info

    def _checked_header(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("type") != "header":
            raise self._error(1, "first line is not a manifest header: not an s3seg manifest")
        if data.get("format") != FORMAT:
            raise self._error(1, f"manifest format {data.get('format')!r} is not supported")
        return data

    def _check_trailer(self, trailer: dict[str, Any] | None, count: int, entries: str, header_sha256: str) -> None:
        """The trailer's count and digests must be those of what was read: nothing cut, edited or added."""
        if trailer is None:
            raise self._error(None, "no trailer: the manifest is truncated (was `s3seg plan` interrupted?)")
        if trailer.get("entries") != count or trailer.get("sha256") != entries:
            raise self._error(
                None,
                f"trailer says {trailer.get('entries')} entries with digest {str(trailer.get('sha256'))[:12]}..., "
                f"file has {count} with {entries[:12]}...: the manifest was edited; plan again",
            )
        if trailer.get("header_sha256") != header_sha256:
            raise self._error(1, "the header does not match the trailer's digest: the manifest was edited; plan again")

    def _parse(self, raw: bytes, lineno: int) -> dict[str, Any]:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: a line of deeply nested brackets
            raise self._error(lineno, "not valid JSON: the manifest is corrupt or was edited") from None
        if not isinstance(data, dict):
            raise self._error(lineno, "not a JSON object: the manifest is corrupt or was edited")
        return data

    def _check_unchanged(self, fd: int) -> None:
        if self._identity(fd) != self._stat:
            raise self._error(
                None, "the manifest file was modified in place after it was verified; nothing more is read from it"
            )

    def moves(self, skip: bytes | bytearray | None = None) -> Iterator[Move]:
        """Stream the entries in id order, from the very file ``verify()`` checked (verified first if needed).

        ``skip[id]`` true: that entry is hashed (the digest still covers every line) but neither parsed nor
        yielded -- how a resume passes over what is done at the speed of hashing. The entry region is read in
        blocks of whole lines: each block is hashed with one ``update``, and a block whose ids are all skipped
        (``skip.find(0, ...)`` finds no zero) is not split into lines at all.

        Every entry yielded is checked (JSON, field types, its id) whatever kind of ``verify()`` came before,
        and after ``verify_bound()`` (which takes its bucket pairs from the journal's header) its bucket pair
        must be one of them: what a lease covers is then still what is executed.
        """
        info = self.info  # verifies (and opens) the file once
        fd = self._open()
        if skip is not None and len(skip) <= info.entries:
            raise ValueError(f"skip mask of {len(skip)} bytes for {info.entries} entries (index by id: 1..N)")
        self._check_unchanged(fd)
        digest = hashlib.sha256()
        for first, n, block in self._entry_blocks(fd, info.entries):
            digest.update(block)
            stop = first + n
            move_id = first if skip is None else skip.find(0, first, stop)
            if move_id == -1:
                continue  # every entry of this block is skipped
            lines = block.split(b"\n")
            while move_id != -1:
                yield self._checked_move(lines[move_id - first], move_id)
                move_id += 1
                if move_id == stop:
                    break
                if skip is not None:
                    move_id = skip.find(0, move_id, stop)
        self._check_unchanged(fd)
        if digest.hexdigest() != self._entries_sha256:
            raise self._error(None, "the manifest's entries changed after it was verified")

    def _checked_move(self, raw: bytes, move_id: int) -> Move:
        data = self._parse(raw, move_id + 1)
        try:
            move = Move.from_dict(data)
        except ValueError as exc:
            raise self._error(move_id + 1, f"malformed entry: {exc}") from None
        if move.id != move_id:
            raise self._error(move_id + 1, "the manifest's entries changed after it was verified")
        if self._claimed is not None and (move.src_bucket, move.dst_bucket) not in self._claimed:
            raise self._error(
                move_id + 1,
                f"entry moves s3://{move.src_bucket} -> s3://{move.dst_bucket}, a bucket pair the journal's header "
                "does not list: the manifest or the journal was edited",
            )
        return move


def _end_of_line(block: bytes, n: int) -> int:
    """The offset just after the ``n``-th line of ``block`` (0 for ``n == 0``)."""
    end = 0
    for _ in range(n):
        end = block.index(b"\n", end) + 1
    return end
