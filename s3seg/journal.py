"""The append-only journal of one manifest: what was attempted and what happened, per move id.

Layout (JSONL, next to the manifest as ``<manifest>.journal`` unless overridden)::

    {"type": "header", "format": 2, "manifest_sha256": "...", "manifest": "plan.jsonl", "created": "...",
     "buckets": [["src", "dst"], ...]}                        the manifest's bucket pairs (absent in older ones)
    {"ev": "intent", "dir": "apply", "ids": [[1, 500]]}         durable BEFORE any copy of those ids
    {"ev": "copied", "dir": "apply", "ids": [[1, 498], 500], "etags": {"2": "\"...\""}, "dedup": [3]}
                                                              durable BEFORE the source deletes
    {"ev": "outcome", "dir": "apply", "status": "done", "ids": [[1, 498], 500]}   may be group-committed
    {"ev": "outcome", "dir": "apply", "status": "failed", "ids": [499], "code": "AccessDenied", "msg": "..."}

``ids`` is a list whose items are single ids or ``[first, last]`` runs of consecutive ids (both ends included):
batches are runs of consecutive manifest ids, so a batch of 500 costs a few dozen bytes per record, about two
bytes per object for its three records. Format 1 journals (``ids`` as plain integers) are read as before, and
appended to in their own format; a run is written only where it is shorter than the integers it stands for.
The ids of one record are independent of each other (each id's state follows from the record alone), so the
writer sorts them before forming runs.

Replaying the lines in order gives each id's latest ``Status``. ``etags`` holds a destination ETag only when
it differs from the planned source ETag (multipart or KMS copies), so memory stays one byte per move plus the
rare exception. Rollback writes the same records with ``"dir": "rollback"``.

Crash rules (see S3-FACTS "Journals"): a torn last line is expected after a crash and is truncated on open (its
ids are simply re-checked against S3); an unparsable line anywhere else is corruption and is refused. One
writer per file, enforced with an exclusive ``flock`` on ``<journal>.lock`` (released by the kernel even on
kill -9).

Local faults (see ``errors``): a journal or lock that cannot be opened raises ``JournalError`` naming the path;
a failed append or fsync raises ``JournalWriteError`` and leaves the journal refusing further appends (what
reached the file is intact; a torn last line is dropped on the next open). ``close()`` after such a failure
releases the file and the lock without raising again.

Must not: talk to S3 or know about process pools.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

from s3seg.crashpoints import crash_point
from s3seg.errors import JournalError, JournalWriteError, LockedError, os_reason
from s3seg.manifest import compact_json, fsync_dir

FORMAT = 2  # 2: ``ids`` may hold [first, last] runs; 1: plain integers only (still read)
FORMATS = frozenset({1, 2})


class Status(enum.IntEnum):
    """Latest known state of one move. Stored as one byte per move id."""

    PENDING = 0  # never attempted
    # apply
    INTENT = 1  # copy may have started
    COPIED = 2  # copy proven; source delete may have started
    DONE = 3  # moved: destination holds the bytes, source deleted
    DEDUPED = 4  # destination already held identical bytes before we came; source deleted
    ALREADY_DONE = 5  # re-check found it done (a resumed item)
    CONFLICT_SOURCE_CHANGED = 6  # source changed since plan: nothing touched
    CONFLICT_DEST_DIFFERS = 7  # destination exists with other bytes: neither touched
    FAILED_MISSING = 8  # source gone and destination absent
    SKIPPED_ARCHIVED = 9  # archived storage class: needs a restore first
    FAILED = 10  # permission or other S3 error (code recorded)
    DONE_ELSEWHERE = 11  # source gone, destination holds the planned bytes, and not by this manifest's doing
    # rollback
    R_INTENT = 20
    R_COPIED = 21
    ROLLED_BACK = 22  # source key holds the original bytes again; destination removed
    R_NOT_MOVED = 23  # nothing had been moved: nothing to undo
    R_CONFLICT_DEST_MODIFIED = 24  # destination changed since the move: kept
    R_CONFLICT_SOURCE_RECREATED = 25  # a new object sits at the source key: never overwritten
    R_FAILED_MISSING = 26  # neither source nor destination exists
    R_FAILED = 27

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


APPLY_DONE = frozenset({Status.DONE, Status.DEDUPED, Status.ALREADY_DONE, Status.DONE_ELSEWHERE})
APPLY_CONFLICTS = frozenset({Status.CONFLICT_SOURCE_CHANGED, Status.CONFLICT_DEST_DIFFERS})
APPLY_FAILURES = frozenset({Status.FAILED_MISSING, Status.FAILED, Status.SKIPPED_ARCHIVED})
ROLLBACK_DONE = frozenset({Status.ROLLED_BACK, Status.R_NOT_MOVED})
ROLLBACK_OPEN = frozenset(
    {
        Status.R_INTENT,
        Status.R_COPIED,
        Status.R_CONFLICT_DEST_MODIFIED,
        Status.R_CONFLICT_SOURCE_RECREATED,
        Status.R_FAILED_MISSING,
        Status.R_FAILED,
    }
)
_ROLLBACK_OPEN_BYTES = frozenset(int(s) for s in ROLLBACK_OPEN)
_ROLLBACK_OPEN_TABLE = bytes(b in _ROLLBACK_OPEN_BYTES for b in range(256))
_NONZERO_TABLE = bytes(b != 0 for b in range(256))
_BY_LABEL = {s.label: s for s in Status}
_DIRS = ("apply", "rollback")

# Ownership of the destination key, per move, across any number of apply/rollback cycles (``JournalState.own``).
# The journal's statuses say what happened last; ownership says whose bytes sit at the destination, which is
# what apply needs to tell "our own earlier copy" from "someone else's identical object", and what rollback
# needs to undo exactly this manifest's moves and nothing else.
DST_OURS = 1  # a proven copy of this manifest's apply sits at the destination (no rollback took it back)
DST_MAYBE = 2  # an apply copy was announced, or failed, without proof either way: it may have happened
SRC_DELETED = 4  # apply deleted the source (a move or a dedup finished): rollback must restore it

# What each apply outcome proves about the destination: True ours, False not ours, None unchanged.
_APPLY_OWNS: dict[Status, bool | None] = {
    Status.DONE: True,
    Status.ALREADY_DONE: True,
    Status.DEDUPED: False,  # identical bytes were there before us: theirs
    Status.DONE_ELSEWHERE: False,
    Status.CONFLICT_DEST_DIFFERS: False,  # other bytes: not ours
    Status.FAILED_MISSING: False,
    Status.CONFLICT_SOURCE_CHANGED: None,  # nothing copied by this attempt; an earlier cycle's copy may remain
    Status.SKIPPED_ARCHIVED: None,
}
# Rollback outcomes that settle a move: the original is back (or was never taken), nothing of ours remains.
_ROLLBACK_SETTLES = frozenset({Status.ROLLED_BACK, Status.R_NOT_MOVED})
# Rollback outcomes after which the destination holds nothing of ours (changed by others, or gone); the
# original may still have been deleted by apply, so SRC_DELETED stays.
_ROLLBACK_DISOWNS = frozenset({Status.R_CONFLICT_DEST_MODIFIED, Status.R_FAILED_MISSING})


def journal_path_for(manifest_path: str) -> str:
    return manifest_path + ".journal"


class JournalState:
    """The replayed state of a journal: one ``Status`` byte per move id, plus the rare extras.

    ``states[id]`` is the latest ``Status`` of move ``id`` (index 0 unused). ``copy_etags`` maps an id to its
    destination ETag where that differs from the planned ETag. ``dedup`` holds ids whose destination existed,
    identical, before the latest apply cycle: rollback restores their source but must not delete that
    destination. ``own[id]`` holds the ownership bits (``DST_OURS``, ``DST_MAYBE``, ``SRC_DELETED``), derived
    from the same records, so journals written before they existed replay to the same answer.
    """

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.states = bytearray(entries + 1)
        self.own = bytearray(entries + 1)
        self.copy_etags: dict[int, str] = {}
        self.dedup: set[int] = set()
        self.last_error: dict[int, str] = {}
        self.format = FORMAT  # of the journal replayed into this state (what its writer keeps appending)

    def apply(self, record: dict[str, Any]) -> None:
        ev = record["ev"]
        direction = record["dir"]
        if direction not in _DIRS:
            raise ValueError(f"unknown dir {direction!r}")
        ids = expand_ids(record["ids"], self.entries)
        for i in ids:
            if not isinstance(i, int) or not 0 < i <= self.entries:
                raise ValueError(f"id {i!r} is not in the manifest")
        rollback = direction == "rollback"
        if ev == "intent":
            self._set(ids, Status.R_INTENT if rollback else Status.INTENT)
            if not rollback:
                self._mark(ids, DST_MAYBE)
        elif ev == "copied":
            self._set(ids, Status.R_COPIED if rollback else Status.COPIED)
            if not rollback:
                self._apply_copied(ids, record)
        elif ev == "outcome":
            status = _BY_LABEL[record["status"]]
            self._set(ids, status)
            self._own_after(status, ids)
            if "code" in record:
                for i in ids:
                    self.last_error[i] = f"{record['code']}: {record.get('msg', '')}"
        else:
            raise ValueError(f"unknown event {ev!r}")

    def _apply_copied(self, ids: list[int], record: dict[str, Any]) -> None:
        """A proven copy (or identical destination) for each id; ``dedup`` lists the ones that were not ours.

        The record describes this cycle only: an earlier cycle's dedup mark or copy ETag for the same id is
        replaced, so a destination that was someone else's last time and ours now is rolled back as ours.
        """
        dedup = set(record.get("dedup", ()))
        etags = {int(k): v for k, v in record.get("etags", {}).items()}
        own = self.own
        for i in ids:
            self.copy_etags.pop(i, None)
            if i in dedup:
                self.dedup.add(i)
                own[i] &= ~DST_OURS & 0xFF
            else:
                self.dedup.discard(i)
                own[i] |= DST_OURS
        self.copy_etags.update(etags)

    def _own_after(self, status: Status, ids: list[int]) -> None:
        own = self.own
        if status in _ROLLBACK_SETTLES or status in _ROLLBACK_DISOWNS:
            keep = 0 if status in _ROLLBACK_SETTLES else SRC_DELETED
            for i in ids:
                own[i] &= keep
            return
        if status not in _APPLY_OWNS:
            return  # FAILED keeps DST_MAYBE; other rollback outcomes leave the destination as apply left it
        verdict = _APPLY_OWNS[status]
        settled = status in APPLY_DONE and status is not Status.DONE_ELSEWHERE
        for i in ids:
            bits = own[i] & ~DST_MAYBE
            if verdict is True:
                bits |= DST_OURS
            elif verdict is False:
                bits &= ~DST_OURS
            if settled:
                bits |= SRC_DELETED
            own[i] = bits & 0xFF

    def _mark(self, ids: Iterable[int], bit: int) -> None:
        own = self.own
        for i in ids:
            own[i] |= bit

    def dst_may_be_ours(self, move_id: int) -> bool:
        """Apply's question: may an identical object at the destination be this manifest's own copy?"""
        return bool(self.own[move_id] & (DST_OURS | DST_MAYBE))

    def src_may_be_deleted(self, move_id: int) -> bool:
        """Rollback's question: may apply have deleted the original (so its absence everywhere is a loss)?"""
        return bool(self.own[move_id] & (DST_OURS | SRC_DELETED))

    def rollback_wanted(self, move_id: int) -> bool:
        """Rollback's question: did this manifest's runs change anything for this move that is not undone?"""
        return bool(self.own[move_id]) or self.states[move_id] in _ROLLBACK_OPEN_BYTES

    def _set(self, ids: Iterable[int], status: Status) -> None:
        states = self.states
        for i in ids:
            states[i] = status

    def status_of(self, move_id: int) -> Status:
        return Status(self.states[move_id])

    def counts(self) -> Counter[Status]:
        """How many moves are in each state (PENDING included)."""
        raw = Counter(self.states[1:])
        return Counter({Status(k): v for k, v in raw.items()})

    def mask(self, statuses: frozenset[Status]) -> bytes:
        """``mask[id]`` is 1 where move ``id`` is in one of ``statuses``, else 0 (index 0 is 0). C speed."""
        table = bytes(s in statuses for s in range(256))
        out = bytearray(self.states.translate(table))
        out[0] = 0
        return bytes(out)

    def rollback_mask(self) -> bytes:
        """``mask[id]`` is 1 where ``rollback_wanted(id)``, else 0 (index 0 is 0). C speed."""
        n = len(self.states)
        opened = int.from_bytes(self.states.translate(_ROLLBACK_OPEN_TABLE), "big")
        owned = int.from_bytes(self.own.translate(_NONZERO_TABLE), "big")
        out = bytearray((opened | owned).to_bytes(n, "big"))
        out[0] = 0
        return bytes(out)


def replay(path: str, *, manifest_sha256: str, entries: int) -> tuple[JournalState, int]:
    """Read a journal into a ``JournalState``; return it and the byte offset after the last good line.

    A torn last line is ignored (the caller that owns the file truncates it); a bad line anywhere else, or a
    header bound to another manifest, raises ``JournalError``. Takes no lock: ``status`` reads a live journal.
    """
    state = JournalState(entries)
    offset = 0
    with _open_for_reading(path) as f:
        lines = iter(f)
        for lineno, raw in enumerate(lines, start=1):
            record = _parse(raw)
            if record is None:
                if next(lines, None) is None:
                    return state, offset  # torn tail: tolerated
                raise JournalError(
                    path,
                    lineno,
                    "corrupt record in the middle of the journal; it cannot be trusted for resume. "
                    "Restore it from a backup, or inspect the bucket before planning again",
                )
            if lineno == 1:
                if record.get("type") != "header" or record.get("format") not in FORMATS:
                    raise JournalError(path, 1, "not an s3seg journal header")
                state.format = record["format"]
                if record.get("manifest_sha256") != manifest_sha256:
                    raise JournalError(
                        path,
                        1,
                        f"this journal belongs to another manifest ({record.get('manifest')!r}, sha256 "
                        f"{str(record.get('manifest_sha256'))[:12]}...); pass the matching manifest, "
                        "or --journal to use another journal file",
                    )
            else:
                try:
                    check_record(record, state.entries)
                    state.apply(record)
                except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
                    raise JournalError(path, lineno, f"malformed record ({exc})") from None
            offset += len(raw)
    return state, offset


_HEADER_LIMIT = 1 << 20


def header_buckets(path: str) -> tuple[str, frozenset[tuple[str, str]]] | None:
    """``(manifest_sha256, bucket pairs)`` from a journal's header, or ``None`` if it has no usable header.

    The pairs are the manifest's (source bucket, destination bucket) pairs as the run that created the journal
    found them in its full verify of that manifest (``Journal(buckets=...)``). Journals written before this
    field existed, a missing, empty or unreadable file, a torn or malformed header: ``None`` (the caller then
    does the full verify; ``replay`` judges the journal itself as before). Reads only the first line.
    """
    try:
        with open(path, "rb") as f:
            first = f.readline(_HEADER_LIMIT)
    except OSError:
        return None
    record = _parse(first)
    if record is None or record.get("type") != "header" or type(record.get("manifest_sha256")) is not str:
        return None
    pairs = record.get("buckets")
    if type(pairs) is not list or not pairs:
        return None
    out: set[tuple[str, str]] = set()
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2 or not all(type(b) is str and b for b in pair):
            return None
        out.add((pair[0], pair[1]))
    return record["manifest_sha256"], frozenset(out)


class Journal:
    """The single writer of one journal file: holds the lock, the replayed ``state``, and appends records.

    Opening it replays what is there (truncating a torn tail) or creates the file with a header bound to the
    manifest's SHA-256.
    """

    def __init__(
        self,
        path: str,
        *,
        manifest_sha256: str,
        manifest_name: str,
        entries: int,
        buckets: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.path = path
        self._buckets = sorted(set(buckets))  # written into a new journal's header (``header_buckets``)
        self._failure = ""  # set by the first failed write: every later append, sync or flush refuses
        _check_journal_path(path)  # a directory or a device is refused before a lock file is created beside it
        self._lock_file = _lock(path + ".lock")
        try:
            self.state, self._file = self._open(manifest_sha256, manifest_name, entries)
        except BaseException:
            self._lock_file.close()
            raise
        self._unsynced = False
        self._last_sync = time.monotonic()
        self._compact = self.state.format >= 2

    def _open(self, manifest_sha256: str, manifest_name: str, entries: int) -> tuple[JournalState, IO[bytes]]:
        try:
            return self._open_file(manifest_sha256, manifest_name, entries)
        except OSError as exc:
            message = f"cannot open the journal: {os_reason(exc, self.path)}; {_ELSEWHERE}"
            raise JournalError(self.path, None, message) from None

    def _open_file(self, manifest_sha256: str, manifest_name: str, entries: int) -> tuple[JournalState, IO[bytes]]:
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            state, good_end = replay(self.path, manifest_sha256=manifest_sha256, entries=entries)
            if good_end > 0:
                f: IO[bytes] = open(self.path, "r+b")  # noqa: SIM115
                if good_end < os.path.getsize(self.path):
                    # A torn last record from a crash: drop it. Its ids keep their earlier state and are
                    # re-checked.
                    f.truncate(good_end)
                    _durable(f)
                f.seek(0, os.SEEK_END)
                return state, f
            # Only a torn header: the crash came while the journal was being created, before any record
            # (records follow a durable header). Start afresh; appending after a truncated header would leave
            # a journal that every later open refuses.
        new: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        header: dict[str, Any] = {
            "type": "header",
            "format": FORMAT,
            "manifest_sha256": manifest_sha256,
            "manifest": manifest_name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if self._buckets:
            header["buckets"] = [list(pair) for pair in self._buckets]
        try:
            new.write(json.dumps(header).encode() + b"\n")
            _durable(new)
            fsync_dir(self.path)  # the new file's directory entry must survive a crash too
        except BaseException:
            # Nothing was recorded yet: leave no half-written journal behind (a full disk, a read-only remount).
            with contextlib.suppress(OSError):
                new.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        return JournalState(entries), new

    @property
    def failed(self) -> JournalWriteError | None:
        """The error of the first failed write, if any: after it nothing more can be recorded."""
        return JournalWriteError(self.path, None, self._failure) if self._failure else None

    def _fail(self, exc: OSError) -> JournalWriteError:
        if not self._failure:
            self._failure = (
                f"cannot write the journal: {os_reason(exc)}; once that is fixed, re-run the same command to "
                "resume (what reached the journal is intact)"
            )
        return JournalWriteError(self.path, None, self._failure)

    def _append(self, record: dict[str, Any], *, durable: bool) -> None:
        if self._failure:
            raise JournalWriteError(self.path, None, self._failure)
        self.state.apply(record)
        line = compact_json(record).encode("utf-8", "backslashreplace")
        line += b"\n"
        crash_point("journal-append", torn=lambda: _durable_partial(self._file, line[: len(line) // 2]))
        try:
            self._file.write(line)
            if durable:
                _durable(self._file)
        except OSError as exc:
            # A full disk or an I/O error: a part of the line may be on disk. Nothing is appended after it (a
            # torn last line is what the next open expects and drops), so the journal stays trustworthy.
            raise self._fail(exc) from None
        if durable:
            self._unsynced = False
            self._last_sync = time.monotonic()
        else:
            self._unsynced = True

    def _ids(self, ids: list[int]) -> list[Any]:
        return compact_ids(ids) if self._compact else list(ids)

    def intent(self, direction: str, ids: list[int]) -> None:
        """Durably announce that these ids are about to be copied (before any request is sent)."""
        self._append({"ev": "intent", "dir": direction, "ids": self._ids(ids)}, durable=True)

    def copied(self, direction: str, ids: list[int], etags: dict[int, str], dedup: list[int]) -> None:
        """Durably record proven copies (before any source delete is sent)."""
        record: dict[str, Any] = {"ev": "copied", "dir": direction, "ids": self._ids(ids)}
        if etags:
            record["etags"] = {str(k): v for k, v in etags.items()}
        if dedup:
            record["dedup"] = dedup
        self._append(record, durable=True)

    def outcome(self, direction: str, status: Status, ids: list[int], code: str = "", msg: str = "") -> None:
        """Record final outcomes; group-committed (fsynced at most every second, and on close)."""
        record: dict[str, Any] = {"ev": "outcome", "dir": direction, "status": status.label, "ids": self._ids(ids)}
        if code:
            record["code"] = code
            record["msg"] = msg[:500]
        self._append(record, durable=False)
        if time.monotonic() - self._last_sync > 1.0:
            self.sync()

    def sync(self) -> None:
        """Make every appended record durable; raises ``JournalWriteError`` if it cannot (or could not before)."""
        if self._failure:
            raise JournalWriteError(self.path, None, self._failure)
        if self._unsynced:
            try:
                _durable(self._file)
            except OSError as exc:
                raise self._fail(exc) from None
            self._unsynced = False
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Sync, close, unlock. After a failed write it only releases the file and the lock (no second error)."""
        try:
            if not self._failure:
                self.sync()
        finally:
            try:
                self._file.close()
            except OSError as exc:
                if not self._failure:  # the final flush itself failed: the caller must hear of it once
                    raise self._fail(exc) from None
            finally:
                self._lock_file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_ELSEWHERE = "the journal and its .lock are kept next to the manifest unless --journal PATH puts them elsewhere"


def _check_journal_path(path: str) -> None:
    if os.path.exists(path) and not os.path.isfile(path):
        what = "a directory" if os.path.isdir(path) else "not a regular file"
        raise JournalError(path, None, f"is {what}; --journal takes a file name, such as DIR/plan.jsonl.journal")


def _lock(lock_path: str) -> IO[bytes]:
    try:
        f = open(lock_path, "ab")  # noqa: SIM115 - held for the journal's lifetime
    except OSError as exc:
        message = f"cannot create the journal's lock file: {os_reason(exc, lock_path)}; {_ELSEWHERE}"
        raise JournalError(lock_path, None, message) from None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise LockedError(
            lock_path,
            None,
            "another s3seg process is applying or rolling back this manifest; wait for it to finish "
            "(the lock is released automatically when that process exits)",
        ) from None
    except OSError as exc:  # e.g. ENOLCK: a network file system without locks
        f.close()
        raise JournalError(lock_path, None, f"cannot lock the journal: {os_reason(exc)}; {_ELSEWHERE}") from None
    return f


def _open_for_reading(path: str) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise JournalError(path, None, f"cannot read the journal: {os_reason(exc)}") from None


_STRING_FIELDS = ("ev", "dir", "status", "code", "msg")
_INT = {int}
_ID_ITEMS = {int, list}


def _is_run(item: list[Any]) -> bool:
    return len(item) == 2 and type(item[0]) is int and type(item[1]) is int and item[0] <= item[1]


def compact_ids(ids: Iterable[int]) -> list[Any]:
    """The ids sorted, with every run of three or more consecutive ids written as ``[first, last]``.

    ``expand_ids`` of the result is ``sorted(ids)`` (duplicates kept). Runs of two stay integers: ``5,6`` is
    shorter than ``[5,6]``.
    """
    out: list[Any] = []
    ordered = sorted(ids)
    n = len(ordered)
    k = 0
    while k < n:
        first = ordered[k]
        j = k
        while j + 1 < n and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - k >= 2:
            out.append([first, ordered[j]])
        else:
            out.extend(ordered[k : j + 1])
        k = j + 1
    return out


def expand_ids(ids: list[Any], entries: int) -> list[int]:
    """A record's ``ids`` as plain integers: ``[first, last]`` runs expanded (after checking they lie within the
    manifest, so a hostile run cannot make a huge list); plain integers are returned unchanged for the caller
    to check."""
    if list not in set(map(type, ids)):  # C speed: format 1 records, and most of format 2's outcome lists
        return ids
    out: list[int] = []
    for item in ids:
        if type(item) is list:
            if not _is_run(item) or not 0 < item[0] <= item[1] <= entries:
                raise ValueError(f"run {item!r} is not a range of ids in the manifest")
            out.extend(range(item[0], item[1] + 1))
        else:
            out.append(item)
    return out


def check_record(record: dict[str, Any], entries: int) -> None:
    """Raise ``ValueError`` unless every known field of a record has its type (``JournalState.apply`` then
    checks what the values mean). Ids are ints, never bools (``True`` is an int in Python)."""
    for name in _STRING_FIELDS:
        if name in record and type(record[name]) is not str:
            raise ValueError(f"field {name!r} is not a string")
    ids = record.get("ids")
    if type(ids) is not list:
        raise ValueError("field 'ids' is missing or not a list of integers")
    types = set(map(type, ids))  # a C-speed loop: replay reads millions of ids
    if not types <= _INT and (not types <= _ID_ITEMS or not all(_is_run(i) for i in ids if type(i) is list)):
        raise ValueError("field 'ids' is not a list of integers and [first, last] runs")
    dedup = record.get("dedup", [])
    if type(dedup) is not list or not all(type(i) is int and 0 < i <= entries for i in dedup):
        raise ValueError("field 'dedup' is not a list of ids in the manifest")
    etags = record.get("etags", {})
    if type(etags) is not dict:
        raise ValueError("field 'etags' is not an object")
    for key, value in etags.items():
        if not (key.isascii() and key.isdigit() and 0 < int(key) <= entries) or type(value) is not str:
            raise ValueError(f"field 'etags' has an entry {key!r} that is not an id in the manifest with an ETag")


def _parse(raw: bytes) -> dict[str, Any] | None:
    if not raw.endswith(b"\n"):
        return None
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: a line of deeply nested brackets
        return None
    return record if isinstance(record, dict) else None


def _durable_partial(f: IO[bytes], data: bytes) -> None:
    """Crash tests only: half a record reaches the disk, as when a kill lands in the middle of a write."""
    f.write(data)
    _durable(f)


def _durable(f: IO[bytes]) -> None:
    f.flush()
    os.fsync(f.fileno())
