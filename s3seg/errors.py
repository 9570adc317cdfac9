"""Every error s3seg raises on purpose, and the process exit codes they map to.

The tree::

    S3SegError                      root; ``exit_code`` says how the CLI ends
    ├── UsageError                  bad flags or arguments                      -> 2
    │   └── ManifestWriteError(path)  ``plan`` cannot write its manifest (also a PathError) -> 2
    ├── PathError(path, line)       about one local file; ``str()`` is ``path:line: message``
    │   ├── ConfigError             config file rejected before any S3 client   -> 2
    │   ├── ManifestError           manifest incomplete, edited, foreign or unreadable -> 3
    │   └── JournalError            journal corrupt, foreign, or cannot be opened -> 3
    │       ├── LockedError         another process holds the journal lock      -> 3
    │       └── JournalWriteError   a journal write or fsync failed mid-run (disk full, I/O error) -> 3
    ├── PlanError                   the plan itself is unsafe (collisions, ...)  -> 2
    ├── StoreRefusedError(cause)    S3 refused or failed a request before anything
    │                               was changed (listing, inventory, probe)     -> 4
    └── StorageError(op, bucket, key, code, retryable)
                                    one S3 call failed; raised only by ``storage``

Every ``OSError`` on a local file s3seg owns (config, manifest, journal, lock, log) becomes one of these, naming
the path, with ``os_reason`` saying what went wrong and what to do. Paths are shown with ``show_path``: bytes
that are not UTF-8 appear as ``\\xff`` escapes instead of breaking the message.

Low-level (botocore) errors are translated to ``StorageError`` in exactly one place, ``s3seg.storage``;
nothing above it catches botocore exceptions. The S3 error codes a ``StorageError`` is judged by are named in
``s3seg.s3errors``, with which layer retries what.
"""

from __future__ import annotations

import enum
import errno
import os

from s3seg.s3errors import CREDENTIAL_REFUSALS


class ExitCode(enum.IntEnum):
    """Process exit codes; the README has the same table. A signal stops a run with 128 + its number
    (SIGHUP 129, SIGINT 130, SIGTERM 143: ``cli.exec_exit_code``); ``INTERRUPTED`` is the value without one."""

    OK = 0  # everything done, or nothing to do
    ITEMS_FAILED = 1  # some items failed or conflicted; nothing lost, re-runnable
    USAGE = 2  # usage or config error; no S3 mutation happened
    REFUSED = 3  # manifest or journal refused (incomplete, mismatched, corrupt, locked), or the buckets' lease held
    STORE_REFUSED = 4  # S3 refused or failed a request before anything changed (no bucket, access, credentials)
    INTERRUPTED = 130  # Ctrl-C (SIGINT); re-run to resume


class S3SegError(Exception):
    """Root of every deliberate s3seg error."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(S3SegError):
    """The command line asks for something impossible or contradictory."""

    exit_code = ExitCode.USAGE


class PathError(S3SegError):
    """An error about one local file. ``str()`` reads ``path:line: what is wrong, and what to do``."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{show_path(path)}:{line}" if line else show_path(path)
        super().__init__(f"{where}: {message}")


class ConfigError(PathError):
    """A config file is rejected."""

    exit_code = ExitCode.USAGE


class PlanError(S3SegError):
    """The plan would be unsafe to apply (two sources onto one destination, a key too long, ...)."""

    exit_code = ExitCode.USAGE


class ManifestError(PathError):
    """A manifest cannot be trusted or read: truncated, edited, malformed, for another target, unreadable."""

    exit_code = ExitCode.REFUSED


class ManifestWriteError(PathError, UsageError):
    """``plan`` cannot write its manifest (missing directory, full disk, read-only file system, ...).

    Exit 2 like the other failures of ``plan``: no S3 mutation happened, and the partial file was removed.
    """

    exit_code = ExitCode.USAGE


class JournalError(PathError):
    """A journal cannot be trusted or used: corrupt middle line, foreign manifest, cannot be opened, ..."""

    exit_code = ExitCode.REFUSED


class LockedError(JournalError):
    """Another s3seg process is applying or rolling back the same manifest."""


class JournalWriteError(JournalError):
    """A journal append or fsync failed (full disk, I/O error). The run must stop: nothing more can be recorded.

    What reached the file is intact (a torn last line is dropped on the next open), so the same command
    resumes once the cause is fixed.
    """


class StoreRefusedError(S3SegError):
    """S3 refused (or failed, after retries) a request made before any mutation: the listing or inventory a
    plan reads, or the capability probe before apply / rollback. Nothing was changed; ``cause`` says why."""

    exit_code = ExitCode.STORE_REFUSED

    def __init__(self, cause: StorageError, what: str) -> None:
        self.cause = cause
        hint = _REFUSAL_HINTS.get(cause.code, "check the endpoint, the bucket and the credentials")
        lead = "credentials refused: " if cause.code in CREDENTIAL_REFUSALS else ""
        super().__init__(f"{lead}{what}: {cause}; nothing was changed; {hint}, then re-run")


class StorageError(S3SegError):
    """One S3 request failed for good (after botocore's retries).

    ``code`` is the S3 error code (``AccessDenied``, ``SlowDown``, ...) or the exception class name for
    transport errors; ``retryable`` says whether trying the whole item again later may succeed; ``retried``
    that botocore retried the request, so this error may answer a repeat of our own applied request.
    """

    exit_code = ExitCode.ITEMS_FAILED

    def __init__(
        self,
        op: str,
        bucket: str,
        key: str,
        code: str,
        message: str = "",
        *,
        status: int | None = None,
        retryable: bool = False,
        retried: bool = False,
    ) -> None:
        self.op = op
        self.bucket = bucket
        self.key = key
        self.code = code
        self.status = status
        self.retryable = retryable
        self.retried = retried  # botocore sent the request more than once: an earlier try may have applied
        super().__init__(f"{op} s3://{bucket}/{key}: {code}{': ' + message if message else ''}")


# -- local file errors -------------------------------------------------------------------------------------------
_HINTS = {
    errno.ENOSPC: "free space on that file system",
    errno.EDQUOT: "free space or raise the quota",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "this user lacks the permission",
    errno.EPERM: "this user lacks the permission",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.EISDIR: "a file name is needed",
    errno.EIO: "the disk reported an I/O error",
}


def os_reason(exc: OSError, path: str | None = None) -> str:
    """``No space left on device (free space on that file system)``: what failed, and the first thing to check.

    With ``path`` (the file being created), a missing directory is named: s3seg creates no directories.
    """
    text = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno == errno.ENOENT and path is not None:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            return f"{text} (the directory {show_path(parent)} does not exist; s3seg creates no directories)"
    hint = _HINTS.get(exc.errno or 0)
    return f"{text} ({hint})" if hint else text


def show_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """A path for a message: bytes that are not UTF-8 (surrogate-escaped by Python) shown as ``\\xNN``."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


# What to tell the operator for the refusals seen before anything changes.
_REFUSAL_HINTS = {
    "ReadTimeoutError": "the endpoint accepted the connection but did not answer in time: check that "
    "--endpoint-url / endpoint_url names an S3 service (or raise read_timeout)",
    "ConnectTimeoutError": "the endpoint did not accept a connection in time: check --endpoint-url / endpoint_url "
    "and the network (or raise connect_timeout)",
    "NoSuchBucket": "check the bucket name in the config (and the endpoint / region)",
    "AccessDenied": "grant this identity the s3:ListBucket / s3:GetObject / s3:PutObject / s3:DeleteObject "
    "permissions it needs",
    "AllAccessDisabled": "the bucket has all access disabled",
    "InvalidAccessKeyId": "the access key is unknown to this endpoint: check the credentials and the endpoint",
    "SignatureDoesNotMatch": "the secret key is wrong for this access key: check the credentials",
    "ExpiredToken": "the session token expired: refresh the credentials",
    "InvalidToken": "the session token is invalid: refresh the credentials",
    "EndpointConnectionError": "the endpoint cannot be reached: check --endpoint-url / endpoint_url",
}
