"""A fake, fast S3 endpoint for the benchmark's memory pass (loopback only; no storage).

It answers the two requests ``s3seg apply --conditional-writes server`` sends per batch as a store that
enforces every condition would when nothing is in the way: CopyObject -> 200 with the ETag the request was
conditioned on (``x-amz-copy-source-if-match``), DeleteObjects -> every listed key deleted. Anything else gets
a 404 (HEAD, GET of an object: the lease s3seg looks for does not exist), a 200 with an ETag (PUT: the lease is
taken) or an empty 200. This lets the benchmark drive the apply parent through 200,000 manifest entries
in a minute or two, to measure whether its memory stays flat, without seeding a real store.

    python -m s3seg_lab.instant_s3        # prints "PORT <n>" on stdout, serves until killed
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys

_KEY = re.compile(rb"<Key>(.*?)</Key>", re.S)


_COUNTER = iter(range(1 << 62))


def _response(status: str, body: bytes = b"", extra: str = "") -> bytes:
    """Headers shaped like SeaweedFS's, so the client parses as much as it would against a real store."""
    head = (
        f"HTTP/1.1 {status}\r\nAccept-Ranges: bytes\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: application/xml\r\n{extra}Server: fakes3\r\nVary: Origin\r\n"
        f"X-Amz-Request-Id: {next(_COUNTER):024X}\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n"
    )
    return head.encode() + body


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            if method == "PUT" and "x-amz-copy-source" in headers:
                etag = headers.get("x-amz-copy-source-if-match", '"d41d8cd98f00b204e9800998ecf8427e"')
                bare = etag.strip('"')  # SeaweedFS sends the ETag unquoted in CopyObjectResult
                xml = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult>'
                    f"<LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>{bare}</ETag>"
                    "</CopyObjectResult>"
                )
                out = _response("200 OK", xml.encode(), f"ETag: {etag}\r\n")
            elif method == "POST" and "?delete" in target:
                deleted = b"".join(b"<Deleted><Key>" + k + b"</Key></Deleted>" for k in _KEY.findall(body))
                start = b'<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                out = _response("200 OK", start + deleted + b"</DeleteResult>")
            elif method == "HEAD":
                out = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
            elif method == "GET" and "?" not in target and target.count("/") > 1:
                # No object exists here: apply's preflight reads its lease key and must see 404, not a body.
                xml = b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code></Error>'
                out = _response("404 Not Found", xml)
            elif method == "PUT":
                out = _response("200 OK", extra='ETag: "d41d8cd98f00b204e9800998ecf8427e"\r\n')
            else:
                out = _response("200 OK")
            writer.write(out)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _main() -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
    sys.exit(0)
