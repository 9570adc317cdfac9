"""Parallel listing against moto (in process): the same keys, in the same order, as one serial listing; and
``list_workers`` in the config gives the same plan as a serial listing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from helpers import cdr_key, write_config

from s3seg import commands, config
from s3seg.listing import list_pages
from s3seg.manifest import Manifest
from s3seg.storage import Storage


def seed(s3: Any, bucket: str) -> set[str]:
    keys = {cdr_key(n, hour=n % 24) for n in range(400)}
    keys |= {f"incoming/{name}" for name in ("ünï.txt", "\ue000.txt", "\ud7ff.txt", "😀.txt", "a b+c.txt", "Z", "0")}
    keys |= {"incoming/sub/x.ccn", "incoming/sub/y.ccn", "incomingX", "other/z"}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b""), sorted(keys)))
    return keys


def test_parallel_listing_on_moto_equals_the_serial_listing(s3: Any, bucket: str) -> None:
    keys = seed(s3, bucket)
    storage = Storage(s3)
    for delimiter in ("", "/"):
        serial = [o for page in storage.list_pages(bucket, "incoming/", delimiter=delimiter) for o in page]
        expected = sorted(
            (k for k in keys if k.startswith("incoming/") and not (delimiter and "/" in k[len("incoming/") :])),
            key=lambda k: k.encode(),
        )
        assert [o.key for o in serial] == expected
        for workers in (2, 5):
            parallel = list_pages(
                storage, bucket, "incoming/", delimiter=delimiter, page_size=37, workers=workers, request_keys=20
            )
            assert [o for page in parallel for o in page] == serial  # keys, sizes, ETags, dates, in order


def test_list_workers_plans_exactly_what_a_serial_listing_plans(s3: Any, bucket: str, tmp_path: Path) -> None:
    seed(s3, bucket)
    plans = []
    for workers in (1, 4):
        cfg = write_config(tmp_path / f"c{workers}.xml", bucket=bucket, list_workers=workers, n_keys=50)
        manifest = str(tmp_path / f"p{workers}.jsonl")
        commands.plan(config.load(cfg), manifest, now=datetime(2023, 1, 2))
        plans.append([(m.id, m.src_key, m.dst_key, m.etag) for m in Manifest(manifest).moves()])
    assert plans[0] == plans[1]
    assert len(plans[0]) == 407
