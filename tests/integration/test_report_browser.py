"""`plan --report` renders in a real headless browser (Debian's ``chromium``): a screenshot that is not blank and
shows the heatmap's cells. Skipped, with the reason, when chromium is not installed."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from helpers import cdr_key, run_cli, write_config

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(page: Path, png: Path, profile: Path) -> None:
    assert CHROMIUM is not None
    subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            f"--screenshot={png}", "--window-size=1200,900", page.resolve().as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )  # fmt: skip


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, RGB(A) rows) of an 8-bit RGB or RGBA PNG, with the stdlib only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    assert len(raw) == height * (stride + 1)
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                c = prev[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [r if channels == 3 else _rgb(r) for r in rows]


def _rgb(row: bytes) -> bytes:
    return bytes(v for i, v in enumerate(row) if i % 4 != 3)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_plan_report_renders_in_headless_chromium(s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path) -> None:
    for i in range(60):
        s3.put_object(Bucket=bucket, Key=cdr_key(i, date=f"2022122{i % 6}", hour=(i * 7) % 24), Body=b"x")
    s3.put_object(Bucket=bucket, Key="incoming/<script>alert(1)<b>.txt", Body=b"e")
    cfg = write_config(tmp_path / "config.xml", bucket=bucket, endpoint=moto_endpoint)
    page, png = tmp_path / "report.html", tmp_path / "shot.png"
    planned = run_cli("plan", "-c", str(cfg), "-o", str(tmp_path / "p.jsonl"), "--report", str(page))
    assert planned.returncode == 0, planned.stderr

    screenshot(page, png, tmp_path / "profile")

    data = png.read_bytes()
    assert 10_000 < len(data) < 5_000_000  # a blank 1200x900 page compresses to a few KB
    width, height, rows = decode_png(data)
    assert (width, height) == (1200, 900)
    colours = {row[x : x + 3] for row in rows[::10] for x in range(0, len(row), 30)}
    assert len(colours) > 8, "the page looks blank"
    # The heatmap's filled cells are dark blue (#08306b at the peak): count such pixels in the whole shot.
    blue = sum(1 for row in rows[::2] for x in range(0, len(row), 6) if row[x + 2] > row[x] + 60 and row[x] < 120)
    assert blue > 200, f"no heatmap cells drawn ({blue} dark-blue samples)"
