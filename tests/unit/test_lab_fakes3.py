"""The benchmark's fake S3 lists as S3 does where a listing could loop or stop early."""

from __future__ import annotations

import re

from s3seg_lab.fakes3 import FakeS3, Request


def _list(store: FakeS3, **query: str) -> tuple[list[str], str]:
    _, (status, _, body) = store.handle(Request("GET", "b", "", {"list-type": "2", **query}, {}, b""))
    assert status == 200
    text = body.decode()
    names = re.findall(r"<(?:Key|Prefix)>([^<]*)</(?:Key|Prefix)>", text.split("</IsTruncated>", 1)[1])
    token = re.search(r"<NextContinuationToken>([^<]*)<", text)
    return names, token.group(1) if token else ""


def test_a_continuation_after_a_common_prefix_goes_past_every_key_under_it() -> None:
    store = FakeS3()
    store.seed("b", ["a/1", "a/2", "a/3", "b", "c/1"], 1)
    seen, token = [], ""
    for _ in range(10):
        names, token = _list(
            store, delimiter="/", **{"max-keys": "1"}, **({"continuation-token": token} if token else {})
        )
        seen += names
        if not token:
            break
    assert seen == ["a/", "b", "c/"]
