"""``copyloop.parse_answer`` reads an HTTP answer however the bytes arrive, as ``leanpath.Connection`` reads it."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3seg.copyloop import parse_answer
from s3seg.leanpath import Connection, ProtocolError

bodies = st.binary(max_size=300)
header_values = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, int, bytes, dict[str, str], bool]:
    """(wire bytes, status, body, extra headers, keep-alive) of one answer, in one of the framings S3 uses."""
    status = draw(st.sampled_from([200, 200, 404, 412, 503]))
    body = draw(bodies)
    extra = draw(st.dictionaries(st.sampled_from(["x-amz-id-2", "x-amz-request-id", "etag"]), header_values))
    framing = draw(st.sampled_from(["length", "chunked"]))
    close = draw(st.booleans())
    head = [f"HTTP/1.1 {status} Whatever"]
    if draw(st.booleans()):
        head = ["HTTP/1.1 100 Continue", "", *head]
    head += [f"{k}: {v}" for k, v in extra.items()]
    if close:
        head.append("Connection: close")
    if framing == "length":
        head.append(f"Content-Length: {len(body)}")
        wire_body = body
    else:
        head.append("Transfer-Encoding: chunked")
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) if b > a]
        wire_body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    wire = "\r\n".join(head).encode() + b"\r\n\r\n" + wire_body
    return wire, status, body, {k.lower(): v for k, v in extra.items()}, not close


@given(answers(), st.data())
def test_an_answer_is_read_whole_only_once_every_byte_is_there(answer, data) -> None:  # type: ignore[no-untyped-def]
    wire, status, body, extra, keep = answer
    split = data.draw(st.integers(0, len(wire) - 1))
    buf = bytearray(wire[:split])
    assert parse_answer(buf, eof=False) is None  # never a short answer
    buf += wire[split:]
    found = parse_answer(buf, eof=False)
    assert found is not None
    response, kept = found
    assert (response.status, response.body, kept) == (status, body, keep)
    assert {k: response.headers[k] for k in extra} == extra
    # Bytes nobody asked for after the answer: the connection is not kept.
    assert parse_answer(bytearray(wire + b"HTTP/1.1 200 OK\r\n"), eof=False)[1] is False  # type: ignore[index]


@given(answers())
def test_it_reads_what_the_threads_connection_reads(answer) -> None:  # type: ignore[no-untyped-def]
    wire, *_ = answer
    conn = Connection("127.0.0.1", 1, None, connect_timeout=1, read_timeout=1)
    conn._reader = io.BufferedReader(io.BytesIO(wire))  # type: ignore[arg-type]
    status, headers, keep = conn._read_head()
    while 100 <= status < 200:
        status, headers, keep = conn._read_head()
    body, keep = conn._read_body("PUT", status, headers, keep)
    found = parse_answer(bytearray(wire), eof=False)
    assert found is not None
    assert (found[0].status, found[0].headers, found[0].body, found[1]) == (status, headers, body, keep)


def test_an_answer_cut_short_by_the_server_closing_is_an_error_not_a_short_body() -> None:
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"
    with pytest.raises(OSError, match="5 of 10"):
        parse_answer(bytearray(wire), eof=True)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n"
    with pytest.raises(OSError, match="chunked"):
        parse_answer(bytearray(chunked), eof=True)
    # No length, no chunks: the body ends where the connection does.
    response, keep = parse_answer(bytearray(b"HTTP/1.1 200 OK\r\n\r\nabc"), eof=True)  # type: ignore[misc]
    assert (response.body, keep) == (b"abc", False)
    assert parse_answer(bytearray(b"HTTP/1.1 200 OK\r\n\r\nabc"), eof=False) is None


@pytest.mark.parametrize(
    "wire",
    [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
)  # fmt: skip
def test_what_is_not_http_is_a_protocol_error(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_answer(bytearray(wire), eof=False)


def test_endless_headers_are_refused() -> None:
    with pytest.raises(ProtocolError, match="too long"):
        parse_answer(bytearray(b"HTTP/1.1 200 OK\r\n" + b"x-a: b\r\n" * 20000), eof=False)
