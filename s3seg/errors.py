"""Every error s3seg raises on purpose, and the process exit codes they map to.

The tree::

    S3SegError                      root; ``exit_code`` says how the CLI ends
    ├── UsageError                  bad flags or arguments                      -> 2
    ├── ConfigError(path, line)     config file rejected before any S3 client   -> 2
    ├── PlanError                   the plan itself is unsafe (collisions, ...)  -> 2
    ├── ManifestError(path, line)   manifest incomplete, edited or foreign       -> 3
    ├── JournalError(path, line)    journal corrupt or bound to another manifest -> 3
    │   └── LockedError             another process holds the journal lock      -> 3
    ├── StoreRefusedError(cause)    S3 refused or failed a request before anything
    │                               was changed (listing, inventory, probe)     -> 4
    └── StorageError(op, bucket, key, code, retryable)
                                    one S3 call failed; raised only by ``storage``

Low-level (botocore) errors are translated to ``StorageError`` in exactly one place, ``s3seg.storage``;
nothing above it catches botocore exceptions.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes; the README has the same table."""

    OK = 0  # everything done, or nothing to do
    ITEMS_FAILED = 1  # some items failed or conflicted; nothing lost, re-runnable
    USAGE = 2  # usage or config error; no S3 mutation happened
    REFUSED = 3  # manifest or journal refused (incomplete, mismatched, corrupt, locked)
    STORE_REFUSED = 4  # S3 refused or failed a request before anything changed (no bucket, access, credentials)
    INTERRUPTED = 130  # Ctrl-C / SIGTERM; re-run to resume


class S3SegError(Exception):
    """Root of every deliberate s3seg error."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(S3SegError):
    """The command line asks for something impossible or contradictory."""

    exit_code = ExitCode.USAGE


class ConfigError(S3SegError):
    """A config file is rejected. ``str()`` reads ``path:line: what is wrong, and what to do``."""

    exit_code = ExitCode.USAGE

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


class PlanError(S3SegError):
    """The plan would be unsafe to apply (two sources onto one destination, a key too long, ...)."""

    exit_code = ExitCode.USAGE


class ManifestError(S3SegError):
    """A manifest cannot be trusted: truncated, edited, malformed, or for another target."""

    exit_code = ExitCode.REFUSED

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


class JournalError(S3SegError):
    """A journal cannot be trusted or used: corrupt middle line, foreign manifest, ..."""

    exit_code = ExitCode.REFUSED

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


class LockedError(JournalError):
    """Another s3seg process is applying or rolling back the same manifest."""


class StoreRefusedError(S3SegError):
    """S3 refused (or failed, after retries) a request made before any mutation: the listing or inventory a
    plan reads, or the capability probe before apply / rollback. Nothing was changed; ``cause`` says why."""

    exit_code = ExitCode.STORE_REFUSED

    def __init__(self, cause: StorageError, what: str) -> None:
        self.cause = cause
        hint = _REFUSAL_HINTS.get(cause.code, "check the endpoint, the bucket and the credentials")
        super().__init__(f"{what}: {cause}; nothing was changed; {hint}, then re-run")


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


# What to tell the operator for the refusals seen before anything changes.
_REFUSAL_HINTS = {
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
