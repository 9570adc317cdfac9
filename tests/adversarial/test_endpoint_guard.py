"""Issue 11, point 5: the endpoint a manifest was planned against is resolved once, recorded, and enforced.

Two stores hold the same bucket with the same objects: A (this suite's moto server process) and B (the session's
in-process moto server). A plan made while botocore's configuration points at A must never move objects on B,
whichever source named the endpoint: ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, ``endpoint_url`` in the
profile of ``AWS_CONFIG_FILE``, or its ``services`` section. Each case checks both stores object by object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from advlab import Lab, assert_same

from s3seg.storage import ClientSpec, configured_endpoint

pytestmark = pytest.mark.integration


def _config_file(path: Path, endpoint: str, *, services: bool) -> str:
    if services:
        text = f"[profile ops]\nservices = stores\n\n[services stores]\ns3 =\n  endpoint_url = {endpoint}\n"
    else:
        text = f"[default]\nendpoint_url = {endpoint}\n"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _sources(lab: Lab, a: str, b: str) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """source -> (environment at plan pointing at A, environment at apply pointing at B)."""
    tmp = lab.tmp
    return {
        "AWS_ENDPOINT_URL": ({"AWS_ENDPOINT_URL": a}, {"AWS_ENDPOINT_URL": b}),
        "AWS_ENDPOINT_URL_S3": ({"AWS_ENDPOINT_URL_S3": a}, {"AWS_ENDPOINT_URL_S3": b}),
        "profile endpoint_url": (
            {"AWS_CONFIG_FILE": _config_file(tmp / "cfg-a", a, services=False)},
            {"AWS_CONFIG_FILE": _config_file(tmp / "cfg-b", b, services=False)},
        ),
        "services section": (
            {"AWS_CONFIG_FILE": _config_file(tmp / "svc-a", a, services=True), "AWS_PROFILE": "ops"},
            {"AWS_CONFIG_FILE": _config_file(tmp / "svc-b", b, services=True), "AWS_PROFILE": "ops"},
        ),
        "S3 variable at plan, global at apply": ({"AWS_ENDPOINT_URL_S3": a}, {"AWS_ENDPOINT_URL": b}),
    }


class Twin:
    """The lab's bucket mirrored on store B with the same objects."""

    def __init__(self, lab: Lab, endpoint: str) -> None:
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        self.s3.create_bucket(Bucket=lab.bucket)
        for key, body in lab.seeded.items():
            self.s3.put_object(Bucket=lab.bucket, Key=key, Body=body)
        self.bucket = lab.bucket

    def state(self) -> dict[str, bytes]:
        out = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                if not obj["Key"].startswith(".s3seg-probe/"):
                    out[obj["Key"]] = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
        return out


@pytest.fixture
def stores(moto_lab: Lab, moto_endpoint: str) -> tuple[Lab, Twin, str, str]:
    lab = moto_lab
    lab.seed(5, errors=1)
    return lab, Twin(lab, moto_endpoint), lab.store.endpoint, moto_endpoint


def _plan(lab: Lab, env: dict[str, str], name: str = "plan.jsonl") -> str:
    config = lab.config(endpoint_url=None)  # no endpoint element: botocore's configuration decides
    path = str(lab.tmp / name)
    run = lab.cli("plan", "-c", str(config), "-o", path, **env)
    assert run.code == 0, run
    lab.manifest = path
    return path


def _header(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return dict(json.loads(f.readline()))


def _in_process(lab: Lab, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], verb: str, *extra: str) -> Any:
    """``s3seg VERB MANIFEST`` in this process with exactly ``env`` as the endpoint configuration."""
    with monkeypatch.context() as m:
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE", "AWS_PROFILE"):
            m.delenv(name, raising=False)
        for name, value in env.items():
            m.setenv(name, value)
        if verb == "plan":
            return lab.plan(endpoint_url=None)  # no endpoint element: botocore's configuration decides
        return lab.run(verb, *extra)


@pytest.mark.parametrize(
    "source",
    [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "profile endpoint_url",
        "services section",
        "S3 variable at plan, global at apply",
    ],
)
def test_apply_and_rollback_pointed_elsewhere_are_refused_and_move_nothing_on_either_store(
    stores: tuple[Lab, Twin, str, str], source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab, twin, a, b = stores
    at_plan, at_apply = _sources(lab, a, b)[source]
    manifest = _in_process(lab, monkeypatch, at_plan, "plan")
    assert _header(manifest)["endpoint"] == a  # recorded, whichever source named it
    for verb in ("apply", "rollback"):
        run = _in_process(lab, monkeypatch, at_apply, verb)
        assert run.code == 3, run
        assert a in run.err and b in run.err
        assert_same(lab.state(), lab.seeded)
        assert_same(twin.state(), lab.seeded)
    # Pointing at A the same way applies on A, and B stays as it was.
    run = _in_process(lab, monkeypatch, at_plan, "apply")
    assert run.code == 0, run
    lab.assert_applied()
    assert_same(twin.state(), lab.seeded)


def test_the_cli_refuses_an_apply_pointed_elsewhere_by_aws_endpoint_url_s3(stores: tuple[Lab, Twin, str, str]) -> None:
    lab, twin, a, b = stores
    manifest = _plan(lab, {"AWS_ENDPOINT_URL_S3": a})
    run = lab.cli("apply", manifest, "--no-progress", "--processes", "0", AWS_ENDPOINT_URL_S3=b)
    assert run.code == 3, run
    assert_same(lab.state(), lab.seeded)
    assert_same(twin.state(), lab.seeded)


def test_nothing_configured_at_apply_uses_the_recorded_endpoint(stores: tuple[Lab, Twin, str, str]) -> None:
    lab, twin, a, _ = stores
    manifest = _plan(lab, {"AWS_ENDPOINT_URL_S3": a})
    run = lab.cli("apply", manifest, "--no-progress", "--processes", "0")
    assert run.code == 0, run
    lab.assert_applied()
    assert_same(twin.state(), lab.seeded)


def test_a_flag_equal_to_the_recorded_endpoint_wins_over_the_environment(stores: tuple[Lab, Twin, str, str]) -> None:
    lab, twin, a, b = stores
    manifest = _plan(lab, {"AWS_ENDPOINT_URL_S3": a})
    run = lab.cli("apply", manifest, "--no-progress", "--processes", "0", "--endpoint-url", a, AWS_ENDPOINT_URL_S3=b)
    assert run.code == 0, run
    lab.assert_applied()
    assert_same(twin.state(), lab.seeded)


def test_a_flag_naming_another_endpoint_is_refused(stores: tuple[Lab, Twin, str, str]) -> None:
    lab, twin, a, b = stores
    manifest = _plan(lab, {"AWS_ENDPOINT_URL_S3": a})
    run = lab.cli("apply", manifest, "--no-progress", "--processes", "0", "--endpoint-url", b)
    assert run.code == 3, run
    assert_same(lab.state(), lab.seeded)
    assert_same(twin.state(), lab.seeded)


def test_ignore_configured_endpoint_urls_turns_every_configured_source_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", _config_file(tmp_path / "cfg", "http://127.0.0.1:1", services=False))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2")
    assert configured_endpoint(ClientSpec()) == "http://127.0.0.1:2"
    assert configured_endpoint(ClientSpec(endpoint_url="http://127.0.0.1:3")) == "http://127.0.0.1:3"
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert configured_endpoint(ClientSpec()) is None


@pytest.mark.parametrize("services", [False, True])
def test_the_resolution_agrees_with_botocores_own_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, services: bool
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", _config_file(tmp_path / "cfg", "http://127.0.0.1:7", services=services))
    profile = "ops" if services else None
    client = boto3.session.Session(profile_name=profile, region_name="us-east-1").client("s3")
    assert configured_endpoint(ClientSpec(profile=profile)) == client.meta.endpoint_url == "http://127.0.0.1:7"
