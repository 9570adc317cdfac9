"""Every S3 error code s3seg decides by, in sets, and the one account of which layer retries what.

Owns: the sets of S3 error codes (and of HTTP statuses and transport-error names, which ``StorageError.code``
carries for answers without a code) that ``storage``, ``leanpath``, ``probe``, ``moves``, ``lease``, ``worker``,
``commands`` and ``errors`` test a ``StorageError.code`` against. A code means the same thing everywhere because
it is spelt once, here.

Must not: import anything (it sits below ``errors``), or decide what an error means for a move (``moves``).

Retries: which layer retries what
---------------------------------
A request can be sent again by four layers; each knows less about S3 and more about the move than the one
below it. Outermost last:

1. **botocore** (every request botocore sends: GetObject, PutObject, multipart copies, HEAD with
   ``full``, and every request the lean path hands back). ``storage.make_client`` sets the mode and the count
   explicitly: ``retry_mode`` (default ``standard``) and ``total_max_attempts`` = ``max_attempts`` (default 8
   attempts), per request, for transport errors, 5xx and throttling. ``standard`` mode also has a per-client
   retry quota that runs dry under a sustained 503 storm. A ``StorageError`` whose request botocore sent more
   than once has ``retried`` set: a 412 or 404 then may answer our own applied first attempt.
2. **the lean path** (the CopyObject, HeadObject, DeleteObject, DeleteObjects and ListObjectsV2 it sends itself;
   ``LeanPath._call``). The same mode and attempt count as the client it was built from, for transport errors
   (``OSError``), ``RETRYABLE_CODES``, ``RETRYABLE_STATUS``, CopyObject's "200 with an error body" and a
   listing that does not parse; no retry quota. A request it hands back (``UseBotocore``) is sent again by
   botocore with botocore's whole budget, so one call may cost up to both budgets; ``retried`` is then set if a
   lean attempt may have been applied.
3. **the move protocol** (``moves.with_item_retries``): up to ``item_retries`` (default 5) re-runs of a whole
   protocol step (copy, prove, delete) with capped exponential backoff and full jitter, for every
   ``StorageError`` with ``retryable`` (``RETRYABLE_CODES``, any 5xx, transport errors, a DeleteObjects key
   answered neither way) and for state that changed under the step. Each re-run re-checks the store first, since
   the last one may have been applied: the steps are idempotent. A key a DeleteObjects chunk could not settle is
   retried alone. The lease (``lease.Lease``) retries taking a bucket's lease the same way, ``item_retries``
   times; ``commands.preflight`` is the one request allowed only 2 attempts (and botocore only), so that a
   silent endpoint fails fast.
4. **the next run**. A move that still failed is ``failed`` in the journal and the same command retries it.
   Within a run nothing retries a move after layer 3 (only Dask runs a lost worker's batch again elsewhere,
   ``dask_backend``: its moves resume like a crashed run's); the circuit breaker (``executor.CircuitBreaker``)
   stops a run whose moves keep failing the same way instead.

Throttling is also *observed* at every layer, not retried: the worker's adaptive concurrency limit
(``concurrency.Gate``) backs off on each answer in ``THROTTLE_CODES`` / ``THROTTLE_STATUS``, whether botocore
retried it (its ``needs-retry`` event), the lean path retried it (``LeanPath.on_throttle``) or a move ended with it.
"""

from __future__ import annotations

# -- what a move decides by --------------------------------------------------------------------------------------
# The object is not there. botocore's HEAD answers "404" (``storage.translate`` makes it NoSuchKey), GET NoSuchKey.
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# A condition (If-Match, If-None-Match, CopySourceIfMatch, a batch ETag) refused the request.
PRECONDITION_CODES = frozenset({"412", "PreconditionFailed"})
# The source is archived and must be restored before it can be copied (AWS and moto spell it differently).
ARCHIVED_CODES = frozenset({"InvalidObjectState", "ObjectNotInActiveTierError"})
# A conditional PutObject lost a race: refused (412) or conflicting with a concurrent write (409). The lease.
WRITE_CONFLICT_CODES = PRECONDITION_CODES | {"ConditionalRequestConflict", "409"}
# The store does not support a conditional header at all (the probe then checks that condition client-side).
UNSUPPORTED_CODES = frozenset({"NotImplemented", "InvalidArgument", "InvalidRequest", "501"})

# -- retries (layers 1-3 above) ----------------------------------------------------------------------------------
# Error codes that mean "try the same request again later" (botocore's standard mode retries these too).
RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
    }
)
# Statuses the lean path retries whatever the code (botocore's standard mode: 429 and the transient 5xx).
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# Throttling as botocore's standard and adaptive modes recognise it (``ThrottledRetryableChecker``): what the lean
# path's adaptive rate limiter backs off on. Pinned equal to botocore's by tests/unit/test_leanpath_contract.py.
THROTTLING_CODES = frozenset(
    {
        "BandwidthLimitExceeded",
        "EC2ThrottledException",
        "LimitExceededException",
        "PriorRequestNotComplete",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ThrottledException",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "TransactionInProgressException",
    }
)
# Answers that mean "you send too fast" to the worker's adaptive concurrency limit (S3, S3-compatible stores, and
# the HTTP statuses alone, which is what ``StorageError.code`` holds for an answer without a body).
THROTTLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "503", "429"}
)
THROTTLE_STATUS = frozenset({429, 503})

# -- the lean path's hand-backs to botocore (``leanpath.LeanPath._check``) ---------------------------------------
# Answers botocore knows how to recover from and the lean path does not.
BOTOCORE_RECOVERS = frozenset(
    {
        "AuthorizationHeaderMalformed",  # wrong signing region: botocore follows the hint
        "PermanentRedirect",
        "TemporaryRedirect",
        "IllegalLocationConstraintException",
        "RequestTimeTooSkewed",  # botocore corrects its clock
        "ExpiredToken",  # botocore refreshes credentials
        "TokenRefreshRequired",
        "InvalidToken",
    }
)
# The bucket lives elsewhere (another region or endpoint): botocore follows, the lean path learns the route again.
REGION_CODES = frozenset(
    {"AuthorizationHeaderMalformed", "PermanentRedirect", "TemporaryRedirect", "IllegalLocationConstraintException"}
)
# The store rejects how the lean path signs or phrases requests: stop using it in this process.
SIGNING_REFUSED_CODES = frozenset({"SignatureDoesNotMatch", "InvalidDigest"})
# Possibly about how the lean path signed: botocore's answer to the same request is the authoritative one.
AUTH_SUSPECT_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "403"})

# -- refusals before anything changes (exit 4) -------------------------------------------------------------------
# "This identity is not accepted here" (as opposed to "not allowed to do this").
CREDENTIAL_REFUSALS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"})
# Refusals of the preflight or the capability probe that every move would meet too (unlike an AccessDenied on the
# probe's scratch prefix, which a prefix-scoped policy may give while allowing the moves themselves).
PREFLIGHT_REFUSALS = CREDENTIAL_REFUSALS | {"NoSuchBucket", "AllAccessDisabled"}
# Transport errors (botocore exception names) of an endpoint that cannot be reached or does not answer.
UNREACHABLE = frozenset({"ReadTimeoutError", "ConnectTimeoutError", "EndpointConnectionError", "ConnectionClosedError"})
