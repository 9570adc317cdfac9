"""The s3seg lab: the tools the tests, the demo and the benchmarks run s3seg against. Not shipped (setup.py
leaves it out); imported from the repo root (pytest's ``pythonpath``, ``python -m s3seg_lab...``, or the thin
entry points in ``scripts/``).

Stores and proxies, all on 127.0.0.1:

- ``local_s3``: start/stop real local S3 servers (moto, SeaweedFS, rclone); ``python -m s3seg_lab.local_s3``
  serves until Ctrl-C.
- ``fakes3``: an in-memory, latency-bound S3 that enforces the conditions s3seg relies on (benchmarks, tests).
- ``instant_s3``: an endpoint that answers CopyObject and DeleteObjects at once, storing nothing (memory pass).
- ``faultproxy``: a fault-injecting, counting HTTP proxy (the adversarial suite).
- ``counting_proxy``: a byte-transparent proxy that counts requests per operation (the benchmark).
- ``s3ops``: the one classifier of a request into its S3 operation, used by both proxies.
- ``tlsfront``: TLS under AWS host names in front of a local store (the lean path on AWS endpoints).

Data: ``cdr`` (CDR-like names and the config that segregates them). Benchmark: ``bench`` (a package).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repo root: what must be on sys.path to import s3seg_lab


def module_command(module: str, *args: str) -> list[str]:
    """``python -m MODULE ARGS`` with this interpreter (run it with ``env=lab_env()``)."""
    return [sys.executable, "-m", module, *args]


def lab_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the repo root first on PYTHONPATH, so that a subprocess started
    in any directory can import s3seg_lab (and this checkout's s3seg)."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env
