"""Hostile config files through the whole CLI: exit 2, ``file:line`` in the message, zero S3 requests.

Each case runs ``s3seg plan``, ``s3seg run`` and the original tool's ``s3seg -c CONFIG`` in-process
(``cli.run_cli``) with every botocore client counted from its creation: a config error must stop s3seg
before any client exists. No message may echo a secret, the content of a file an entity points at, or an
entity expansion.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from s3seg.cli import run_cli

SECRET = "wJalrXUtnFEMI-K7MDENG-SECRETVALUE-do-not-echo"
FILE_SECRET = "TOP-SECRET-FILE-CONTENT-7f3a"


@dataclass
class Counter:
    clients: int = 0
    requests: int = 0


@pytest.fixture
def s3_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    """Counts botocore clients created and requests about to be sent, in this process, by anyone."""
    counter = Counter()
    real = botocore.session.Session.create_client

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        counter.clients += 1
        client = real(self, *args, **kwargs)

        def before_send(**kw: Any) -> None:
            counter.requests += 1

        client.meta.events.register("before-send", before_send)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", create_client)
    yield counter


BASE = {
    "log_file": "{tmp}/s3seg.log",
    "match_pattern": r"^CHARGINGCDR_.*-(\d{8})-?(\d{2}).*",
    "datetime_format": "%Y%m%d%H",
    "s3_dir": "s3://bucket-a/incoming/",
    "s3_segregated_dir": "s3://bucket-a/segregated/%Y/%m/%d/%H/",
    "s3_error_dir": "s3://bucket-a/error/",
    "endpoint_url": "http://127.0.0.1:9",  # nothing listens there: a request would fail loudly anyway
    "state_dir": "{tmp}",
}


def _xml(tmp: Path, *, override: dict[str, str | None] | None = None, extra: str = "", head: str = "") -> str:
    """A config with one element per line (line 1 is <config>, elements from line 2 on, in BASE order)."""
    values = {**BASE, **(override or {})}
    lines = [f"  <{k}>{v.replace('{tmp}', str(tmp))}</{k}>" for k, v in values.items() if v is not None]
    body = "\n".join(lines)
    return f"{head}<config>\n{body}\n{extra}</config>\n"


def _line_of(text: str, needle: str) -> int:
    for n, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return n
    raise AssertionError(needle)


def _cases(tmp: Path) -> dict[str, tuple[str | bytes, int | None, list[str]]]:
    """name -> (file content, expected line or None, strings the output must not contain)."""
    secret_file = tmp / "secret.txt"
    secret_file.write_text(FILE_SECRET)
    billion = (
        '<?xml version="1.0"?>\n<!DOCTYPE config [\n <!ENTITY lol "lol">\n'
        + "".join(f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10))
        + "]>\n"
    )
    cases: dict[str, tuple[str | bytes, int | None, list[str]]] = {}

    def add(name: str, text: str | bytes, line: int | None, forbidden: list[str] | None = None) -> None:
        cases[name] = (text, line, forbidden or [])

    ok = _xml(tmp)
    add("malformed-unclosed-tag", ok.replace("</s3_dir>", ""), _line_of(ok, "</config>"))  # libxml2: mismatch there
    add("malformed-garbage-after-root", ok + "<config/>\n", ok.count("\n") + 1)
    xxe_head = f'<?xml version="1.0"?>\n<!DOCTYPE config [<!ENTITY xxe SYSTEM "file://{secret_file}">]>\n'
    add("xxe-local-file", _xml(tmp, override={"log_file": "&xxe;"}, head=xxe_head), 2, [FILE_SECRET])
    pe_head = f'<?xml version="1.0"?>\n<!DOCTYPE config [\n<!ENTITY % p SYSTEM "file://{secret_file}">\n%p;\n]>\n'
    add("xxe-parameter-entity", _xml(tmp, head=pe_head), 2, [FILE_SECRET])
    add("external-dtd", _xml(tmp, head='<!DOCTYPE config SYSTEM "http://127.0.0.1:9/evil.dtd">\n'), 1)
    add("billion-laughs", _xml(tmp, override={"log_file": "&lol9;"}, head=billion), 2, ["lollollol"])
    add(
        "unknown-element-carrying-a-secret",
        _xml(tmp, extra=f"  <aws_secret_access_key>{SECRET}</aws_secret_access_key>\n"),
        len(BASE) + 2,
        [SECRET],
    )
    add("missing-required-s3_dir", _xml(tmp, override={"s3_dir": None}), None)
    dup = _xml(tmp, extra="  <s3_dir>s3://bucket-a/other/</s3_dir>\n")
    add("duplicated-element", dup, len(BASE) + 2)
    add("wrong-root", ok.replace("<config>", "<configuration>").replace("</config>", "</configuration>"), 1)
    add("attribute", ok.replace("<s3_dir>", '<s3_dir kind="x">'), _line_of(ok, "<s3_dir>"))
    for name, element, value in [
        ("n_keys-zero", "n_keys", "0"),
        ("n_keys-5000", "n_keys", "5000"),
        ("n_workers-negative", "n_workers", "-1"),
        ("processes-not-a-number", "processes", "abc"),
        ("batch_size-1001", "batch_size", "1001"),
        ("time_delay-negative", "time_delay", "-5"),
        ("multipart_threshold-1-byte", "multipart_threshold", "1"),
        ("item_retries-101", "item_retries", "101"),
        ("max_attempts-zero", "max_attempts", "0"),
        ("conditional_writes-maybe", "conditional_writes", "maybe"),
        ("retry_mode-yolo", "retry_mode", "yolo"),
        ("bad-regex", "match_pattern", "^CHARGINGCDR_(.*"),
        ("strftime-unknown-directive", "datetime_format", "%Y%m%Q"),
        ("strftime-repeated-directive", "datetime_format", "%Y%Y%m"),
        ("strftime-no-directive", "datetime_format", "yyyymmdd"),
        ("strftime-lone-percent", "datetime_format", "%Y%m%d%"),
        ("template-unknown-directive", "s3_segregated_dir", "s3://bucket-a/seg/%Q/"),
        ("s3_dir-not-s3-url", "s3_dir", "https://bucket-a/incoming/"),
        ("s3_dir-bad-bucket", "s3_dir", "s3://Bad_Bucket!/incoming/"),
        ("s3_dir-double-slash", "s3_dir", "s3://bucket-a/in//coming/"),
        ("error-dir-equals-source", "s3_error_dir", "s3://bucket-a/incoming/"),
        ("segregated-equals-source", "s3_segregated_dir", "s3://bucket-a/incoming/"),
        ("endpoint-not-http", "endpoint_url", "ftp://127.0.0.1:9/"),
        ("log_file-dir-missing", "log_file", "{tmp}/no/such/dir/s3seg.log"),
        ("log_file-is-a-directory", "log_file", "{tmp}"),
        ("log_file-parent-is-a-file", "log_file", "{tmp}/secret.txt/s3seg.log"),
        ("log_file-bad-strftime", "log_file", "{tmp}/s3seg-%Q.log"),
        ("state_dir-missing", "state_dir", "{tmp}/nope"),
    ]:
        text = _xml(tmp, override={element: value})
        add(name, text, _line_of(text, f"<{element}>"))
    secret_endpoint = _xml(tmp, override={"endpoint_url": f"ftp://admin:{SECRET}@127.0.0.1:9/"})
    add("endpoint-with-credentials-invalid", secret_endpoint, _line_of(secret_endpoint, "<endpoint_url>"), [SECRET])
    add("empty-file", "", None)
    add("binary-garbage", bytes(range(256)) * 4, None)
    add("too-large", "<config>" + " " * (2 * 1024 * 1024) + "</config>", None)
    return cases


def _case_names() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return list(_cases(Path(d)))


CASES = _case_names()


@pytest.mark.parametrize("case", CASES)
def test_hostile_config_exits_2_names_file_and_line_and_sends_nothing(
    case: str, tmp_path: Path, s3_calls: Counter, capsys: pytest.CaptureFixture[str]
) -> None:
    content, line, forbidden = _cases(tmp_path)[case]
    path = tmp_path / "config.xml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    manifest = tmp_path / "plan.jsonl"
    for argv in (["plan", "-c", str(path), "-o", str(manifest)], ["run", "-c", str(path)], ["-c", str(path)]):
        code = run_cli(argv)
        out, err = capsys.readouterr()
        assert code == 2, (argv, out, err)
        where = f"{path}:{line}:" if line else f"{path}"
        assert where in err, (where, err)
        for text in forbidden:
            assert text not in out + err, f"echoed {text!r}: {err}"
        assert len(err) < 4000, "the whole file (or an expansion) was echoed"
    assert s3_calls.clients == 0 and s3_calls.requests == 0
    assert not manifest.exists()
    assert not list(tmp_path.glob("s3seg-*.jsonl*"))


def test_a_missing_config_file_exits_2_naming_it(tmp_path: Path, s3_calls: Counter, capsys: Any) -> None:
    path = tmp_path / "nope.xml"
    assert run_cli(["plan", "-c", str(path)]) == 2
    assert str(path) in capsys.readouterr().err
    assert s3_calls.clients == 0


def test_the_counting_hook_does_count_a_good_configs_requests(tmp_path: Path, s3_calls: Counter, capsys: Any) -> None:
    """The zero above means something: the same hook sees a valid config's plan reach for S3."""
    path = tmp_path / "config.xml"
    path.write_text(_xml(tmp_path, override={"endpoint_url": "http://127.0.0.1:9", "max_attempts": "1"}))
    code = run_cli(["plan", "-c", str(path), "-o", str(tmp_path / "plan.jsonl")])
    capsys.readouterr()
    assert code != 0  # nothing listens on port 9
    assert s3_calls.clients >= 1 and s3_calls.requests >= 1
