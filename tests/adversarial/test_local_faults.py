"""Local faults and hostile files: a clear message naming the path, a documented exit code, never a traceback.

Each case runs the CLI (in-process ``cli.run_cli`` where the fault is injected by patching ``open``, a real
subprocess where the fault is real: a closed pipe, ``/dev/full``, a file name that is not UTF-8) against the
moto server behind this test's counting proxy, and checks the exit code, that stderr names the path and holds
no traceback, and the final state: the bucket unchanged (or exactly applied), nothing left behind on disk.

Full disks and read-only file systems are simulated (this suite must not need root or mounts): ``open`` in
``s3seg.journal`` / ``s3seg.manifest`` is patched to return files on a "disk" with a byte budget (a write that
does not fit writes what fits, then fails with ENOSPC, as a real full disk does) or to refuse with EROFS.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from advlab import Lab, Run

from s3seg import cli
from s3seg.errors import JournalWriteError
from s3seg.journal import Journal, Status, journal_path_for

pytestmark = pytest.mark.integration

OBJECTS = 12
REAL_OPEN = open


def _cli(*argv: str) -> Run:
    """``s3seg ARGV`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.run_cli(list(argv), out=out)
    return Run(code, out.getvalue(), err.getvalue())


def _assert_clean(run: Run, code: int, *names: str) -> None:
    assert run.code == code, run
    assert "Traceback" not in run.err and "Logging error" not in run.err, run
    for name in names:
        assert name in run.err, run


def _files(root: Path) -> set[str]:
    """Every file and directory under ``root`` but the log (which the CLI opens before anything else)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")} - {"s3seg.log"}


def _planned(lab: Lab) -> tuple[str, dict[str, bytes]]:
    lab.seed(OBJECTS)
    manifest = lab.plan(batch_size=4)
    return manifest, lab.state(bodies=False)


class Disk:
    """A file system with ``free`` bytes left: a write that does not fit writes what fits and raises ENOSPC."""

    def __init__(self, free: int) -> None:
        self.free = free

    def wrap(self, f: Any) -> Any:
        return _FillingFile(f, self)


class _FillingFile:
    def __init__(self, f: Any, disk: Disk) -> None:
        self._f = f
        self._disk = disk

    def write(self, data: bytes) -> int:
        room = max(self._disk.free, 0)
        if len(data) > room:
            self._f.write(data[:room])
            self._f.flush()
            self._disk.free = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.free -= len(data)
        return int(self._f.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


def _open_on(disk: Disk, wanted: Callable[[str], bool]) -> Callable[..., Any]:
    """An ``open`` whose files for writing, at paths ``wanted`` accepts, live on ``disk``."""

    def fake_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = REAL_OPEN(path, mode, *args, **kwargs)
        if wanted(os.fspath(path)) and any(c in mode for c in "wa+"):
            return disk.wrap(f)
        return f

    return fake_open


REAL_FDOPEN = os.fdopen


def _fdopen_on(disk: Disk, wanted: Callable[[str], bool]) -> Callable[..., Any]:
    """An ``os.fdopen`` whose files for writing, at paths ``wanted`` accepts, live on ``disk`` (the manifest
    writer opens its private temporary file from ``tempfile.mkstemp``'s descriptor)."""

    def fake_fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = REAL_FDOPEN(fd, mode, *args, **kwargs)
        if any(c in mode for c in "wa+") and wanted(os.readlink(f"/proc/self/fd/{fd}")):
            return disk.wrap(f)
        return f

    return fake_fdopen


def _read_only_under(root: Path) -> Callable[..., Any]:
    """An ``open`` for which everything under ``root`` is on a read-only file system."""

    def fake_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if os.path.abspath(os.fspath(path)).startswith(str(root)) and any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return REAL_OPEN(path, mode, *args, **kwargs)

    return fake_open


# -- the journal's path -----------------------------------------------------------------------------------------
def test_journal_in_a_missing_directory_is_refused_with_exit_3_naming_it(moto_lab: Lab) -> None:
    lab = moto_lab
    manifest, before = _planned(lab)
    journal = str(lab.tmp / "missing" / "plan.journal")
    for verb in ("apply", "rollback"):
        run = _cli(verb, manifest, "--processes", "0", "--journal", journal)
        _assert_clean(run, 3, str(lab.tmp / "missing"), "does not exist")
    assert lab.proxy.requests() == 0
    assert lab.state(bodies=False) == before
    assert not (lab.tmp / "missing").exists()


def test_journal_naming_a_directory_is_refused_with_exit_3_and_creates_nothing(moto_lab: Lab) -> None:
    lab = moto_lab
    manifest, before = _planned(lab)
    folder = lab.tmp / "journals"
    folder.mkdir()
    files = _files(lab.tmp)
    for argv in (
        ("apply", manifest, "--processes", "0"),
        ("rollback", manifest, "--processes", "0"),
        ("apply", manifest, "--dry-run"),
        ("status", manifest),
    ):
        run = _cli(*argv, "--journal", str(folder))
        _assert_clean(run, 3, str(folder), "directory")
    assert lab.proxy.requests() == 0
    assert lab.state(bodies=False) == before
    assert _files(lab.tmp) == files  # no journals.lock beside it


def test_manifest_on_a_read_only_file_system_is_refused_with_exit_3_naming_the_journal(
    moto_lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal (and its lock) go next to the manifest by default: where that is read-only, say so."""
    lab = moto_lab
    manifest, before = _planned(lab)
    files = _files(lab.tmp)
    monkeypatch.setattr("s3seg.journal.open", _read_only_under(lab.tmp), raising=False)
    for verb in ("apply", "rollback"):
        run = _cli(verb, manifest, "--processes", "0")
        _assert_clean(run, 3, journal_path_for(manifest), "Read-only file system", "--journal")
    assert _cli("status", manifest).code == 0  # reading needs no write access
    assert lab.proxy.requests() == 0
    assert lab.state(bodies=False) == before
    assert _files(lab.tmp) == files


def test_a_journal_that_cannot_even_get_its_header_leaves_no_journal_behind(
    moto_lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = moto_lab
    manifest, before = _planned(lab)
    journal = journal_path_for(manifest)
    monkeypatch.setattr("s3seg.journal.open", _open_on(Disk(free=10), lambda p: p == journal), raising=False)
    run = _cli("apply", manifest, "--processes", "0")
    _assert_clean(run, 3, journal, "No space left on device")
    assert lab.proxy.requests() == 0
    assert lab.state(bodies=False) == before
    assert not os.path.exists(journal)


# -- the journal's disk fills up mid-apply ---------------------------------------------------------------------
@pytest.mark.parametrize("free", [273, 323, 463, 763])  # the header (with its bucket pair) takes 255 bytes, the run 880
def test_a_journal_whose_disk_fills_mid_apply_stops_cleanly_and_resumes_exactly(
    moto_lab: Lab, monkeypatch: pytest.MonkeyPatch, free: int
) -> None:
    """The write that does not fit leaves a torn line at most; nothing is lost, and once space is back the same
    command finishes the job exactly (the torn tail is dropped, its ids re-checked)."""
    lab = moto_lab
    manifest, _ = _planned(lab)
    journal = journal_path_for(manifest)
    disk = Disk(free=free)
    monkeypatch.setattr("s3seg.journal.open", _open_on(disk, lambda p: p == journal), raising=False)
    run = lab.run("apply")
    _assert_clean(run, 3, journal, "cannot write the journal", "No space left on device", "re-run")
    assert disk.free == 0  # the fault did fire
    lab.assert_nothing_lost()
    lab.assert_done_has_proof()  # what the journal says is done is done
    assert _cli("status", manifest).code == 0  # the journal is still readable: a torn tail at most
    monkeypatch.undo()  # space freed
    assert lab.inline("apply") == 0, lab.last_result
    lab.assert_applied()


def test_a_failed_journal_write_refuses_every_later_append_and_close_does_not_raise_again(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    journal = Journal(path, manifest_sha256="0" * 64, manifest_name="m", entries=10)
    journal.intent("apply", [1, 2])
    journal._file = Disk(free=5).wrap(journal._file)  # the disk fills now
    with pytest.raises(JournalWriteError, match="No space left on device") as info:
        journal.copied("apply", [1, 2], {}, [])
    assert info.value.path == path and info.value.exit_code == 3
    with pytest.raises(JournalWriteError):
        journal.outcome("apply", Status.DONE, [1])  # nothing is written after a torn line
    with pytest.raises(JournalWriteError):
        journal.sync()  # never pretends the records are durable
    assert journal.failed is not None
    journal.close()  # releases file and lock, no second error
    with Journal(path, manifest_sha256="0" * 64, manifest_name="m", entries=10) as again:  # lock was released
        assert again.state.status_of(1) == Status.INTENT  # the torn "copied" line was dropped
        assert again.state.status_of(3) == Status.PENDING


def test_a_failed_journal_fsync_is_a_journal_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "j")
    journal = Journal(path, manifest_sha256="0" * 64, manifest_name="m", entries=10)

    def eio(f: Any) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr("s3seg.journal._durable", eio)
    with pytest.raises(JournalWriteError, match="Input/output error") as info:
        journal.intent("apply", [1])
    assert path in str(info.value)
    journal.close()


# -- plan -o on a full disk, or onto something that is not a file ---------------------------------------------
@pytest.mark.parametrize("free", [100, 2000, 0])
def test_plan_on_a_full_disk_exits_2_naming_the_manifest_and_leaves_no_temp_file(
    moto_lab: Lab, monkeypatch: pytest.MonkeyPatch, free: int
) -> None:
    lab = moto_lab
    lab.seed(OBJECTS)
    config = str(lab.config())
    files = _files(lab.tmp)
    before = lab.state(bodies=False)
    out = str(lab.tmp / "plan.jsonl")
    temp = str(lab.tmp / ".plan.jsonl.")  # the writer's private temporary file, renamed onto out when complete
    monkeypatch.setattr("s3seg.manifest.os.fdopen", _fdopen_on(Disk(free), lambda p: p.startswith(temp)))
    run = _cli("plan", "-c", config, "-o", out)
    _assert_clean(run, 2, out, "No space left on device")
    assert _files(lab.tmp) == files  # no plan.jsonl, no plan.jsonl.tmp
    assert lab.proxy.mutations() == 0
    assert lab.state(bodies=False) == before


def test_plan_onto_a_fifo_is_refused_and_the_fifo_is_kept(moto_lab: Lab) -> None:
    """``os.replace`` would swap any non-file for the manifest (as root: ``-o /dev/null``)."""
    lab = moto_lab
    lab.seed(3)
    fifo = lab.tmp / "pipe"
    os.mkfifo(fifo)
    run = _cli("plan", "-c", str(lab.config()), "-o", str(fifo))
    _assert_clean(run, 2, str(fifo), "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert lab.proxy.requests() == 0  # refused before listing


# -- hostile files: nested JSON, wrong field types -------------------------------------------------------------
NESTED = b"[" * 100_000 + b"]" * 100_000 + b"\n"


@pytest.mark.parametrize("line", [0, 2], ids=["header", "entry"])
def test_a_manifest_line_of_deeply_nested_json_is_refused_with_exit_3_naming_the_line(moto_lab: Lab, line: int) -> None:
    lab = moto_lab
    manifest, before = _planned(lab)
    with open(manifest, "rb") as f:
        lines = f.readlines()
    lines[line] = NESTED
    with open(manifest, "wb") as f:
        f.writelines(lines)
    for argv in (("apply", manifest, "--processes", "0"), ("status", manifest), ("apply", manifest, "--dry-run")):
        run = _cli(*argv)
        _assert_clean(run, 3, f"{manifest}:{line + 1}", "not valid JSON")
    assert lab.proxy.requests() == 0
    assert lab.state(bodies=False) == before


def _applied(lab: Lab) -> tuple[str, list[bytes], dict[str, bytes]]:
    manifest, _ = _planned(lab)
    assert lab.inline("apply") == 0, lab.last_result
    with open(journal_path_for(manifest), "rb") as f:
        lines = f.readlines()
    assert len(lines) > 4
    return manifest, lines, lab.state(bodies=False)


def test_a_journal_line_of_deeply_nested_json_in_the_middle_is_corruption(moto_lab: Lab) -> None:
    lab = moto_lab
    manifest, lines, after = _applied(lab)
    journal = journal_path_for(manifest)
    with open(journal, "wb") as f:
        f.writelines([*lines[:2], NESTED, *lines[2:]])
    lab.proxy.reset_counts()
    for argv in (("rollback", manifest, "--processes", "0"), ("status", manifest)):
        _assert_clean(_cli(*argv), 3, f"{journal}:3", "corrupt")
    assert lab.proxy.requests() == 0
    assert lab.state(bodies=False) == after


def test_a_journal_ending_in_deeply_nested_json_is_a_torn_tail(moto_lab: Lab) -> None:
    lab = moto_lab
    manifest, _, _ = _applied(lab)
    with open(journal_path_for(manifest), "ab") as f:
        f.write(NESTED)
    run = _cli("status", manifest, "--json")
    assert run.code == 0, run
    assert json.loads(run.out)["remaining"] == 0
    assert lab.inline("rollback") == 0, lab.last_result
    lab.assert_rolled_back()


WRONG_TYPES = {
    "ids-a-string": {"ev": "outcome", "dir": "apply", "status": "done", "ids": "abc"},
    "ids-a-bool": {"ev": "outcome", "dir": "apply", "status": "done", "ids": [True]},
    "ids-a-float": {"ev": "intent", "dir": "apply", "ids": [1.0]},
    "ids-missing": {"ev": "intent", "dir": "apply"},
    "status-a-number": {"ev": "outcome", "dir": "apply", "status": 5, "ids": [1]},
    "etags-a-list": {"ev": "copied", "dir": "apply", "ids": [1], "etags": []},
    "etags-a-number-value": {"ev": "copied", "dir": "apply", "ids": [1], "etags": {"1": 5}},
    "etags-key-not-an-id": {"ev": "copied", "dir": "apply", "ids": [1], "etags": {"x": '"e"'}},
    "dedup-an-object": {"ev": "copied", "dir": "apply", "ids": [1], "dedup": {}},
    "dedup-a-bool": {"ev": "copied", "dir": "apply", "ids": [1], "dedup": [True]},
    "dedup-not-in-manifest": {"ev": "copied", "dir": "apply", "ids": [1], "dedup": [99999]},
    "code-a-list": {"ev": "outcome", "dir": "apply", "status": "failed", "ids": [1], "code": ["x"]},
    "ev-a-number": {"ev": 1, "dir": "apply", "ids": [1]},
    "dir-null": {"ev": "intent", "dir": None, "ids": [1]},
}


@pytest.mark.parametrize("where", ["middle", "last"])
def test_a_journal_record_with_a_wrong_field_type_is_refused_with_exit_3_naming_file_and_line(
    moto_lab: Lab, where: str
) -> None:
    """A well-formed JSON line with the wrong types is not a torn write: refused wherever it is."""
    lab = moto_lab
    manifest, lines, after = _applied(lab)
    journal = journal_path_for(manifest)
    at = 2 if where == "middle" else len(lines)
    lab.proxy.reset_counts()
    for case, record in WRONG_TYPES.items():
        with open(journal, "wb") as f:
            f.writelines([*lines[:at], json.dumps(record).encode() + b"\n", *lines[at:]])
        for argv in (
            ("rollback", manifest, "--processes", "0"),
            ("apply", manifest, "--processes", "0"),
            ("rollback", manifest, "--dry-run"),
            ("status", manifest),
        ):
            run = _cli(*argv)
            assert run.code == 3, (case, run)
            _assert_clean(run, 3, f"{journal}:{at + 1}", "malformed record")
    assert lab.proxy.requests() == 0
    assert lab.state(bodies=False) == after


# -- real processes: a file name that is not UTF-8, a closed pipe, a full log disk ------------------------------
def _spawn(lab: Lab, *argv: str, stdout: int = subprocess.PIPE) -> tuple[int, bytes, str]:
    """``s3seg ARGV`` as a subprocess: exit code, stdout as bytes (paths are printed as their own bytes)."""
    done = subprocess.run(
        [sys.executable, "-m", "s3seg", *argv],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=lab.env(),
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout or b"", done.stderr.decode("utf-8", "replace")


def test_a_config_path_that_is_not_utf8_gives_a_clean_error_when_missing_and_works_when_present(
    moto_lab: Lab,
) -> None:
    lab = moto_lab
    lab.seed(4)
    code, _, err = _spawn(lab, "plan", "-c", str(lab.tmp / "\udcfe.xml"))  # the file name is the bytes b"\xfe.xml"
    _assert_clean(Run(code, "", err), 2, "\\xfe.xml", "cannot read the config file")
    config = lab.config(name="\udcff.xml")
    manifest = str(lab.tmp / "plan-\udcff.jsonl")
    code, out, err = _spawn(lab, "plan", "-c", str(config), "-o", manifest)
    _assert_clean(Run(code, "", err), 0)
    assert os.fsencode(manifest) in out  # printed as the path's own bytes, usable as they are
    code, out, err = _spawn(lab, "apply", manifest, "--no-progress", "--json")
    _assert_clean(Run(code, "", err), 0)
    assert json.loads(out)["this_run"] == {"done": len(lab.seeded)}
    lab.manifest = manifest
    lab.assert_applied()


def _spawn_with_closed_stdout(lab: Lab, *argv: str) -> tuple[int, str]:
    """``s3seg ARGV | head -0``: the reader of stdout is gone before the first byte is written."""
    read, write = os.pipe()
    os.close(read)
    try:
        code, _, err = _spawn(lab, *argv, stdout=write)
    finally:
        os.close(write)
    return code, err


def test_a_closed_stdout_is_not_an_error_and_the_exit_code_stays_the_commands(moto_lab: Lab) -> None:
    lab = moto_lab
    manifest, before = _planned(lab)
    for argv in (("status", manifest), ("apply", manifest, "--dry-run")):
        code, err = _spawn_with_closed_stdout(lab, *argv)
        assert (code, err) == (0, "")
    code, err = _spawn_with_closed_stdout(lab, "plan", "-c", str(lab.config()), "-o", str(lab.tmp / "again.jsonl"))
    assert (code, err) == (0, "")
    assert lab.state(bodies=False) == before
    code, err = _spawn_with_closed_stdout(lab, "apply", manifest, "--no-progress")
    assert (code, err) == (0, "")  # the objects were moved: that is what the exit code reports
    lab.assert_applied()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (writes fail with ENOSPC)")
def test_a_log_file_on_a_full_disk_is_one_warning_and_the_run_completes(moto_lab: Lab) -> None:
    lab = moto_lab
    manifest, _ = _planned(lab)
    run = lab.cli("apply", manifest, "--no-progress", "--json", "--log-file", "/dev/full", "-v")
    _assert_clean(run, 0)
    assert run.err.count("cannot write the log file /dev/full: No space left on device") == 1, run
    assert "warning" in run.err
    assert "No space left on device" in run.summary["log_error"]
    lab.assert_applied()
