"""Two runs at once sharing a ``state_dir``, and a manifest swapped on disk between verify and execute.

Issue 11, point 3: manifest names had second resolution and one fixed ``.tmp`` file, and the manifest verified
was re-opened by path to execute it. Each test asserts the final bucket state and the journals.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from advlab import NOW, Lab, assert_same, body_for, cdr_name

from s3seg import commands
from s3seg import config as config_mod
from s3seg.errors import ManifestError
from s3seg.journal import Status, journal_path_for, replay
from s3seg.manifest import Manifest
from s3seg_lab import lab_env

pytestmark = pytest.mark.integration

# Runs the CLI with datetime.now() frozen, so two processes start "in the same second" for certain.
FROZEN_CLI = """
import datetime as _dt, sys
import s3seg.cli as cli

class _Frozen(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2023, 1, 2, 12, 0, 0)

if __name__ == "__main__":  # worker processes are spawned: they re-import this file
    cli.datetime = _Frozen
    sys.exit(cli.run_cli(sys.argv[1:]))
"""


def _two_sources(lab: Lab, n: int = 12) -> tuple[Path, Path, dict[str, dict[str, bytes]]]:
    """Configs ``a.xml`` and ``b.xml``: same bucket and state_dir, different s3_dir / destinations."""
    expected: dict[str, dict[str, bytes]] = {}
    configs = []
    for side in ("a", "b"):
        for i in range(n):
            key = f"in-{side}/" + cdr_name(i, hour=i % 3)
            lab.put(key, body_for(key, 7))
        configs.append(
            lab.config(
                name=f"{side}.xml",
                s3_dir=f"s3://{lab.bucket}/in-{side}/",
                s3_segregated_dir=f"s3://{lab.bucket}/seg-{side}/%Y/%m/%d/%H/",
                s3_error_dir=f"s3://{lab.bucket}/err-{side}/",
                processes=1,
            )
        )
    applied = dict(lab.seeded)
    for key in list(applied):
        side, name = key.split("/", 1)
        hour = name.split("-")[-2][:2]
        applied[f"seg-{side[3:]}/2022/12/31/{hour}/{name}"] = applied.pop(key)
    expected["applied"] = applied
    return configs[0], configs[1], expected


def _manifests(state_dir: Path) -> list[Path]:
    return sorted(p for p in state_dir.glob("s3seg-*.jsonl"))


def _journal_counts(manifest: Path) -> dict[str, int]:
    info = Manifest(str(manifest)).verify()
    state, _ = replay(journal_path_for(str(manifest)), manifest_sha256=info.sha256, entries=info.entries)
    return {s.label: n for s, n in state.counts().items()}


def test_two_runs_in_the_same_second_each_move_exactly_their_own_objects(moto_lab: Lab) -> None:
    lab = moto_lab
    a, b, expected = _two_sources(lab)
    shim = lab.tmp / "frozen_cli.py"
    shim.write_text(FROZEN_CLI, encoding="utf-8")
    procs = [
        subprocess.Popen(
            # One bucket: the lease lets one run at a time mutate it, so the second waits for the first.
            [sys.executable, str(shim), "run", "-c", str(cfg), "--no-progress", "--json", "--lock-wait", "120"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=lab_env(lab.env()),  # the shim imports this checkout's s3seg, wherever it runs
        )
        for cfg in (a, b)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, f"exit {p.returncode}\n{out[-2000:]}\n{err[-2000:]}"
    assert_same(lab.state(), expected["applied"])
    manifests = _manifests(lab.tmp)
    assert len(manifests) == 2, manifests  # one per run, never shared
    sources = set()
    for m in manifests:
        moves = list(Manifest(str(m)).moves())
        assert len(moves) == 12
        sources.add(moves[0].src_key.split("/")[0])
        assert _journal_counts(m) == {Status.DONE.label: 12}
        st = subprocess.run(
            [sys.executable, "-m", "s3seg", "status", str(m), "--json"],
            capture_output=True,
            text=True,
            env=lab.env(),
            check=False,
        )
        assert st.returncode == 0, st.stderr
    assert sources == {"in-a", "in-b"}
    assert not list(lab.tmp.glob("*.tmp"))


def test_two_runs_with_the_same_now_get_their_own_manifests(moto_lab: Lab) -> None:
    lab = moto_lab
    a, b, expected = _two_sources(lab, n=5)
    opts = commands.ExecOptions(processes=0)
    for cfg in (a, b):
        report, result = commands.run(config_mod.load(cfg), now=NOW, opts=opts)
        assert report.planned == 5 and result.report.finished == 5
    assert_same(lab.state(), expected["applied"])
    manifests = _manifests(lab.tmp)
    assert len(manifests) == 2
    assert all(_journal_counts(m) == {Status.DONE.label: 5} for m in manifests)


def test_default_manifest_names_sort_by_time_and_never_repeat(moto_lab: Lab) -> None:
    settings = config_mod.load(moto_lab.config())
    names = {commands.default_manifest_path(settings, NOW) for _ in range(200)}
    assert len(names) == 200
    later = commands.default_manifest_path(settings, NOW.replace(microsecond=1))
    assert all(later > n for n in names)


def test_a_manifest_replaced_after_verify_is_not_what_gets_executed(moto_lab: Lab, monkeypatch: Any) -> None:
    lab = moto_lab
    a, b, expected = _two_sources(lab, n=6)
    path_a, path_b = str(lab.tmp / "a.jsonl"), str(lab.tmp / "b.jsonl")
    commands.plan(config_mod.load(a), path_a, now=NOW)
    commands.plan(config_mod.load(b), path_b, now=NOW)
    sha_a = hashlib.sha256(Path(path_a).read_bytes()).hexdigest()
    real_verify = Manifest.verify
    swapped: list[str] = []

    def verify_then_swap(self: Manifest) -> Any:
        info = real_verify(self)
        if not swapped:  # another plan (or a hand) renames a different manifest onto the path
            swapped.append(self.path)
            os.replace(path_b, self.path)
        return info

    monkeypatch.setattr(Manifest, "verify", verify_then_swap)
    result = commands.apply(path_a, commands.ExecOptions(processes=0))
    monkeypatch.undo()
    assert swapped == [path_a]
    assert result.report.finished == 6
    want = dict(lab.seeded)
    for key, body in expected["applied"].items():
        if key.startswith("seg-a/"):
            want[key] = body
            want.pop("in-a/" + key.rsplit("/", 1)[-1])
    assert_same(lab.state(), want)  # a's objects moved, b's untouched
    state, _ = replay(journal_path_for(path_a), manifest_sha256=sha_a, entries=6)  # bound to what was verified
    assert state.counts() == {Status.DONE: 6}


def test_a_manifest_edited_in_place_after_verify_is_refused(moto_lab: Lab) -> None:
    lab = moto_lab
    a, _, _ = _two_sources(lab, n=3)
    path = str(lab.tmp / "a.jsonl")
    commands.plan(config_mod.load(a), path, now=NOW)
    manifest = Manifest(path)
    manifest.verify()
    raw = Path(path).read_bytes()
    with open(path, "r+b") as f:  # same inode, same size, one destination changed
        f.write(raw.replace(b"seg-a/", b"seg-x/", 1))
    os.utime(path, ns=(1, 1))
    with pytest.raises(ManifestError, match="modified in place"):
        list(manifest.moves())
    assert_same(lab.state(), lab.seeded)
