"""A request-counting TCP proxy for the benchmark (loopback only): requests per S3 operation (``s3ops``).

Sits between a client (s3seg, s5cmd, the original algorithm) and the S3 server and counts HTTP requests by S3
operation. Each client connection gets its own upstream connection and bytes are piped unchanged in both
directions, so keep-alive, ``Expect: 100-continue`` and SigV4 (the ``Host`` header is forwarded as signed)
work exactly as without the proxy. Only the client->server stream is parsed, just enough to find request
boundaries (head, then a ``Content-Length`` or chunked body); responses are not parsed at all.

    proxy = CountingProxy("127.0.0.1", 8333).start()   # runs an asyncio loop in a daemon thread
    proxy.endpoint                                      # http://127.0.0.1:<port>
    proxy.reset(); ...; proxy.counts()                  # Counter({"CopyObject": 20000, "DeleteObjects": 40})
    proxy.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter

from s3seg_lab.s3ops import operation


class CountingProxy:
    """Counts requests per S3 operation while piping bytes between clients and one upstream server."""

    def __init__(self, upstream_host: str, upstream_port: int, listen_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.port = 0
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def endpoint(self) -> str:
        return f"http://{self.listen_host}:{self.port}"

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def start(self) -> CountingProxy:
        self._thread = threading.Thread(target=self._run, name="counting-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    # -- internals ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(asyncio.start_server(self._client, self.listen_host, 0, backlog=1024))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _client(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            ureader, uwriter = await asyncio.open_connection(*self.upstream)
        except OSError:
            cwriter.close()
            return
        back = asyncio.ensure_future(self._pipe(ureader, cwriter))
        try:
            await self._requests(creader, uwriter)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                uwriter.write_eof()
            with contextlib.suppress(Exception):
                await back
            for w in (uwriter, cwriter):
                with contextlib.suppress(Exception):
                    w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            writer.write(head)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            op = operation(method, target, headers)
            with self._lock:
                self._counts[op] += 1
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    writer.write(size_line)
                    size = int(size_line.split(b";")[0].strip(), 16)
                    if size == 0:
                        while True:  # trailers, then the empty line
                            trailer = await reader.readuntil(b"\r\n")
                            writer.write(trailer)
                            if trailer == b"\r\n":
                                break
                        break
                    writer.write(await reader.readexactly(size + 2))
            else:
                remaining = int(headers.get("content-length", "0") or 0)
                while remaining > 0:
                    chunk = await reader.read(min(remaining, 65536))
                    if not chunk:
                        return
                    writer.write(chunk)
                    remaining -= len(chunk)
            await writer.drain()
