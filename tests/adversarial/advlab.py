"""Helpers of the adversarial suite: ``Lab`` (one scenario on one store, behind one fault proxy) and checks.

``Lab`` is one scenario: a fresh bucket on a store, objects seeded straight into it, a config whose
``endpoint_url`` is this test's ``FaultProxy`` (so every s3seg request, from every worker process, crosses the
proxy and is counted), an in-process plan, CLI runs as real subprocesses (own session, so a test can kill the
whole process group), and the invariant checks every test ends with:

* ``assert_applied``: every planned object is at its destination exactly once with its bytes, no source is
  left, nothing else changed (the exact final state);
* ``assert_rolled_back``: the bucket is exactly as seeded;
* ``assert_nothing_lost``: at any instant, every seeded object's bytes exist at its source or destination key;
* ``assert_done_has_proof``: every id the journal records as done has its destination bytes and no source.

The fixtures (``conftest.py``) parametrize the store over ``moto`` (the moto server, in the test process) and
``seaweedfs`` (a real store from ``s3seg_lab/local_s3.py``, started once per session, marked ``seaweedfs``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from helpers import wait_for

from s3seg import commands
from s3seg import config as config_mod
from s3seg.journal import APPLY_DONE, Status, journal_path_for, replay
from s3seg.manifest import Manifest
from s3seg_lab import cdr, local_s3
from s3seg_lab.cdr import cdr_name
from s3seg_lab.faultproxy import FaultProxy

NOW = datetime(2023, 1, 2, 12, 0, 0)
PROBE_PREFIX = ".s3seg-probe/"
LEASE_KEY = ".s3seg-lease"

# Settings that keep fault and crash runs short: few botocore attempts (its backoff is ~1 s per retry), a few
# fast item-level retries above them, small batches so a run has many batches (many crash windows).
FAST = {"max_attempts": 3, "item_retries": 4, "batch_size": 10, "processes": 2, "n_workers": 4}


# -- stores ------------------------------------------------------------------------------------------------------
@dataclass
class StoreHandle:
    name: str
    endpoint: str
    access_key: str
    secret_key: str

    def client(self, **config: Any) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, max_pool_connections=32, **config),
        )

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


# -- the scenario ------------------------------------------------------------------------------------------------
def body_for(key: str, seed: int, size: int | None = None) -> bytes:
    rng = random.Random(f"{seed}:{key}")
    n = size if size is not None else rng.randint(0, 300)
    return hashlib.sha256(key.encode()).hexdigest().encode()[: min(n, 64)] + rng.randbytes(max(0, n - 64))


@dataclass
class Lab:
    store: StoreHandle
    tmp: Path
    proxy: FaultProxy
    bucket: str = ""
    s3: Any = None
    seeded: dict[str, bytes] = field(default_factory=dict)
    manifest: str = ""
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    _outputs: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    last_result: Any = None
    probe_leftovers: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.s3 = self.store.client()
        self.bucket = f"adv-{uuid.uuid4().hex[:16]}"
        self.s3.create_bucket(Bucket=self.bucket)

    # -- setup ----------------------------------------------------------------------------------------------
    def put(self, key: str, body: bytes, **kw: Any) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, **kw)
        self.seeded[key] = body

    def seed(self, n: int, *, seed: int = 0, errors: int = 3, hours: int = 4) -> dict[str, bytes]:
        """``n`` CDR files under incoming/ across ``hours`` hour-folders, plus ``errors`` non-matching names."""
        for i in range(n):
            key = "incoming/" + cdr_name(i, hour=i % hours)
            self.put(key, body_for(key, seed))
        for i in range(errors):
            key = f"incoming/unmatched-{i:03d}.txt"
            self.put(key, body_for(key, seed))
        return dict(self.seeded)

    def config(self, *, name: str = "config.xml", endpoint: str | None = None, **extra: Any) -> Path:
        # Every s3seg request crosses this test's proxy unless told otherwise: counted, and faults injected.
        extra = {"n_loops": 0, "state_dir": str(self.tmp), **FAST, **extra}
        return cdr.write_config(self.tmp / name, bucket=self.bucket, endpoint=endpoint or self.proxy.url, **extra)

    def plan(self, name: str = "plan.jsonl", **extra: Any) -> str:
        """Plan in-process (fast) through the proxy; returns the manifest path."""
        settings = config_mod.load(self.config(**extra))
        path = str(self.tmp / name)
        commands.plan(settings, path, now=NOW, unlimited=True)
        self.manifest = path
        self.proxy.reset_counts()  # the counters now count what apply / rollback send
        return path

    # -- running ---------------------------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3SEG_"))}
        env.update(self.store.env)
        env.update(extra)
        return env

    def spawn(self, *args: str, crash_at: str | None = None, **env: str) -> subprocess.Popen[str]:
        """``s3seg ARGS`` as a subprocess in its own session (the test may kill the whole group).

        Output goes to files, not pipes: orphaned workers of a killed parent would hold a pipe open.
        """
        if crash_at:
            env["S3SEG_CRASH_AT"] = crash_at
        n = len(self.procs)
        out = open(self.tmp / f"run{n}.out", "w+")  # noqa: SIM115 - closed in finish()
        err = open(self.tmp / f"run{n}.err", "w+")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "s3seg", *args],
            stdout=out,
            stderr=err,
            text=True,
            env=self.env(**env),
            start_new_session=True,
        )
        self._outputs[proc.pid] = (out, err)
        self.procs.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen[str], timeout: float = 120) -> Run:
        """Wait for the parent, kill what is left of its process group, and collect its output."""
        try:
            proc.wait(timeout)
        finally:
            self.reap(proc)
        out, err = self._outputs.pop(proc.pid)
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read())
            f.close()
        return Run(proc.returncode, texts[0], texts[1])

    def cli(self, *args: str, timeout: float = 120, crash_at: str | None = None, **env: str) -> Run:
        return self.finish(self.spawn(*args, crash_at=crash_at, **env), timeout)

    def reap(self, proc: subprocess.Popen[str]) -> None:
        """Kill whatever is left of a run's process group (orphaned workers after a parent's kill -9)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(10)

    def run(self, verb: str, *extra: str, processes: int = 0) -> Run:
        """``s3seg VERB MANIFEST --json ...`` in this process (``cli.run_cli``: same exit codes and summary as
        the console script, no interpreter start-up; ``processes=0`` runs the batches inline). For re-runs after
        a crash and for scenarios that need no subprocess."""
        from s3seg.cli import run_cli

        out, err = io.StringIO(), io.StringIO()
        argv = [verb, self.manifest, "--no-progress", "--json", "--processes", str(processes), *extra]
        with contextlib.redirect_stderr(err):
            code = run_cli(argv, out=out)
        self.last_result = Run(code, out.getvalue(), err.getvalue())
        return self.last_result

    def inline(self, verb: str, *, processes: int = 0) -> int:
        """The exit code of ``run`` (the whole ``Run`` is in ``last_result``)."""
        return self.run(verb, processes=processes).code

    def exec_args(self, verb: str, *extra: str) -> list[str]:
        return [verb, self.manifest, "--no-progress", "--json", *extra]

    def apply(self, *extra: str, **kw: Any) -> Run:
        return self.cli(*self.exec_args("apply", *extra), **kw)

    def rollback(self, *extra: str, **kw: Any) -> Run:
        return self.cli(*self.exec_args("rollback", *extra), **kw)

    # -- observing -------------------------------------------------------------------------------------------
    def state(self, *, bodies: bool = True) -> dict[str, bytes]:
        """Every current object in the bucket (straight to the store, not via the proxy): key -> bytes, or
        with ``bodies=False`` key -> MD5 hex (from the listing's ETag where that is the MD5: cheap; compare
        with ``fingerprint``).

        Scratch objects of the capability probe (``.s3seg-probe/``) are set aside in ``probe_leftovers``: a
        kill during the probe leaves them behind (reported; they hold no user data).
        """
        self.proxy.wait_idle()
        out: dict[str, bytes] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.startswith(PROBE_PREFIX) or key == LEASE_KEY:
                    self.probe_leftovers.add(key)  # a killed run's lease is taken over by the next run
                elif bodies:
                    out[key] = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                elif "-" in obj["ETag"]:  # a multipart ETag is not the MD5 of the bytes: read them
                    body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                    out[key] = fingerprint(body)
                else:
                    out[key] = obj["ETag"].strip('"').encode()
        return out

    def moves(self) -> list[tuple[int, str, str]]:
        m = Manifest(self.manifest)
        m.verify()
        return [(mv.id, mv.src_key, mv.dst_key) for mv in m.moves()]

    def expected_applied(self) -> dict[str, bytes]:
        expected = dict(self.seeded)
        for _, src, dst in self.moves():
            expected[dst] = expected.pop(src)
        return expected

    def journal(self) -> Any:
        info = Manifest(self.manifest).verify()
        state, _ = replay(journal_path_for(self.manifest), manifest_sha256=info.sha256, entries=info.entries)
        return state

    def assert_applied(self, *, exclude: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        expected = {k: v for k, v in self.expected_applied().items() if k not in exclude}
        got = {k: v for k, v in self.state().items() if k not in exclude}
        assert_same(got, expected)

    def assert_rolled_back(self) -> None:
        assert_same(self.state(), self.seeded)

    def assert_nothing_lost(self) -> dict[str, bytes]:
        """Every seeded object's bytes are at its source or its destination; nothing foreign appeared.

        Compares MD5s (the listing's ETags of single-part objects), so it can run at every step cheaply; the
        final ``assert_applied`` / ``assert_rolled_back`` compare the bytes themselves."""
        now = self.state(bodies=False)
        dst_of = {src: dst for _, src, dst in self.moves()}
        lost = []
        for src, body in self.seeded.items():
            dst = dst_of.get(src)
            fp = fingerprint(body)
            if now.get(src) != fp and (dst is None or now.get(dst) != fp):
                lost.append(src)
        assert not lost, f"{len(lost)} objects lost: {lost[:5]}"
        allowed = set(self.seeded) | set(dst_of.values())
        foreign = sorted(set(now) - allowed)
        assert not foreign, f"unexpected keys appeared: {foreign[:5]}"
        return now

    def assert_done_has_proof(self) -> int:
        """Every id the journal calls done: destination holds the bytes and the source is gone."""
        if not os.path.exists(journal_path_for(self.manifest)):
            return 0  # killed before the journal existed: nothing recorded, nothing to prove
        state = self.journal()
        now = self.state(bodies=False)
        bad = []
        done = 0
        for mid, src, dst in self.moves():
            if state.status_of(mid) in APPLY_DONE:
                done += 1
                if now.get(dst) != fingerprint(self.seeded[src]) or src in now:
                    bad.append((mid, state.status_of(mid).label, src))
        assert not bad, f"recorded done without proof: {bad[:5]}"
        return done

    def journal_counts(self) -> dict[str, int]:
        return {s.label: n for s, n in self.journal().counts().items()}


@contextlib.contextmanager
def process_state_kept() -> Iterator[None]:
    """In-process ``run_cli`` installs log handlers on the ``s3seg`` logger and a SIGTERM handler: undo both,
    so tests elsewhere in the session see the process as they left it."""
    import logging

    logger = logging.getLogger("s3seg")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    sigterm = signal.getsignal(signal.SIGTERM)
    sighup = signal.getsignal(signal.SIGHUP)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, sighup)
        for handler in logger.handlers:
            if handler not in saved[0]:
                handler.close()
        logger.handlers[:], logger.propagate, logger.level = saved
        signal.signal(signal.SIGTERM, sigterm)


def fingerprint(body: bytes) -> bytes:
    """What ``Lab.state(bodies=False)`` shows for an object with these bytes (single-part ETag = MD5)."""
    return hashlib.md5(body).hexdigest().encode()


def assert_same(got: dict[str, bytes], expected: dict[str, bytes]) -> None:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    changed = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    assert not (missing or extra or changed), (
        f"bucket differs: {len(missing)} missing {missing[:3]}, {len(extra)} extra {extra[:3]}, "
        f"{len(changed)} changed {changed[:3]}"
    )


@dataclass(repr=False)
class Run:
    code: int
    out: str
    err: str

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads(self.out) if self.out.strip().startswith("{") else {}

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out[-4000:]}\n--- stderr\n{self.err[-3000:]}"

    __str__ = __repr__


__all__ = [
    "FAST",
    "LEASE_KEY",
    "NOW",
    "PROBE_PREFIX",
    "Lab",
    "Run",
    "Status",
    "StoreHandle",
    "assert_same",
    "body_for",
    "cdr_name",
    "fingerprint",
    "local_s3",
    "process_state_kept",
    "wait_for",
]
