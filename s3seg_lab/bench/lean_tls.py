"""Client CPU per 1,000 moves over HTTPS on AWS host names: the lean path vs botocore.

A move here is what ``s3seg apply`` sends per object against a store that enforces the conditions: one
conditional CopyObject, and its share of a DeleteObjects batch (250 keys). ``--head`` adds a HeadObject per
move (stores whose conditions are checked client-side).

The store is a canned-answer HTTPS stub in a child process (its CPU is not counted), with a throw-away CA and a
certificate for ``*.s3.<region>.amazonaws.com``; in this process every ``*.amazonaws.com`` name resolves to it,
so ``make_storage`` takes the AWS route (no explicit endpoint: per-bucket route learned from botocore,
virtual-hosted, TLS verified against ``AWS_CA_BUNDLE``). What is measured is this process's CPU time (all
threads), not wall time: meaningful on a shared machine.

    python scripts/bench_lean_tls.py --moves 5000 --threads 16 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock

from s3seg_lab import lab_env, module_command

REGION = "eu-west-1"
BUCKET = "bench-bucket"
_KEY = re.compile(rb"<Key>([^<]*)</Key>")


class _Canned(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *_: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)) if self.command != "HEAD" else "3")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_PUT(self) -> None:
        self._answer(200, b'<CopyObjectResult><ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag></CopyObjectResult>')

    def do_HEAD(self) -> None:
        self._answer(200, headers={"ETag": '"d41d8cd98f00b204e9800998ecf8427e"'})

    def do_DELETE(self) -> None:
        self._answer(204)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        deleted = b"".join(b"<Deleted><Key>" + k + b"</Key></Deleted>" for k in _KEY.findall(body))
        self._answer(200, b"<DeleteResult>" + deleted + b"</DeleteResult>")


def serve(cert: str, key: str, port_file: str) -> None:
    """The child process: the canned HTTPS store on 127.0.0.1, until killed."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    server.daemon_threads = True
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


def _local_dns(port: int) -> Any:
    real = socket.getaddrinfo

    def local(host: Any, service: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".amazonaws.com"):
            return real("127.0.0.1", port, *args, **kwargs)
        return real(host, service, *args, **kwargs)

    return mock.patch.object(socket, "getaddrinfo", local)


def run(lean: bool, moves: int, threads: int, head: bool) -> dict[str, float]:
    from s3seg.storage import ClientSpec, make_storage

    spec = ClientSpec(region=REGION, max_pool_connections=threads, max_attempts=3, lean_http=lean)
    storage = make_storage(spec)
    assert (storage.lean is not None) == lean
    etag = '"d41d8cd98f00b204e9800998ecf8427e"'

    def one(i: int) -> None:
        if head:
            storage.head(BUCKET, f"src/{i:08d}")
        storage.copy(BUCKET, f"src/{i:08d}", BUCKET, f"dst/{i:08d}", if_match=etag, if_none_match=True,
                     storage_class="")  # fmt: skip

    def batch(start: int) -> None:
        errors = storage.delete_batch(BUCKET, [(f"src/{i:08d}", etag) for i in range(start, min(start + 250, moves))])
        assert not errors, next(iter(errors.values()))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(min(200, moves))))  # warm-up: connections, TLS handshakes, the bucket's route
        cpu, wall = time.process_time(), time.perf_counter()
        list(pool.map(one, range(moves)))
        list(pool.map(batch, range(0, moves, 250)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if storage.lean is not None:
        assert storage.lean.enabled
    return {"cpu_s_per_1000": cpu / moves * 1000, "wall_s": wall, "moves_per_s": moves / wall}


def main() -> None:
    threading.current_thread().name = "bench"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--head", action="store_true", help="a HeadObject per move too")
    parser.add_argument("--serve", nargs=3, metavar=("CERT", "KEY", "PORT_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    from s3seg_lab.tlsfront import make_pki

    with tempfile.TemporaryDirectory() as tmp:
        pki = make_pki(Path(tmp))
        port_file = Path(tmp) / "port"
        child = subprocess.Popen(
            module_command("s3seg_lab.bench.lean_tls", "--serve", pki.cert_file, pki.key_file, str(port_file)),
            stdout=subprocess.DEVNULL,
            env=lab_env(),
        )
        try:
            deadline = time.monotonic() + 20
            while not (port_file.exists() and port_file.read_text()) and time.monotonic() < deadline:
                time.sleep(0.05)
            port = int(port_file.read_text())
            os.environ.update(AWS_CA_BUNDLE=pki.ca_file, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
            for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "AWS_ENDPOINT_URL"):
                os.environ.pop(name, None)
            results: dict[str, list[dict[str, float]]] = {"lean": [], "botocore": []}
            with _local_dns(port):
                for _ in range(args.runs):
                    for name in results:  # interleaved: drifting load on the shared machine hits both alike
                        results[name].append(run(name == "lean", args.moves, args.threads, args.head))
        finally:
            child.kill()
            child.wait(10)
    summary = {
        name: {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]} for name, runs in results.items()
    }
    summary["ratio_cpu_botocore_over_lean"] = {
        "x": round(summary["botocore"]["cpu_s_per_1000"] / summary["lean"]["cpu_s_per_1000"], 2)
    }
    print(json.dumps({"moves": args.moves, "threads": args.threads, "runs": args.runs, "head": args.head,
                      "median": summary, "all": results}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
