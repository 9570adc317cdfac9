"""The copy loop (``s3seg.copyloop``) against the fake S3, which enforces the conditions s3seg relies on.

The claims: every task comes back exactly once (a result, or handed to the pool); a task handed over with what
its copy request was answered ends exactly as ``copy_phase`` alone would have ended it, in results and in the
bucket; nothing unsent is reported sent (or the retry would take an identical destination for our own copy);
and a store that refuses connections, never answers or closes connections loses nothing.
"""

from __future__ import annotations

import hashlib
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from helpers import wait_for

from s3seg.concurrency import AdaptiveLimit, Gate, ThrottlePacer
from s3seg.copyloop import CopyLoop, enabled_for
from s3seg.moves import Kind, Options, Result, SentCopy, Task, copy_phase
from s3seg.probe import Capabilities
from s3seg.storage import ClientSpec, make_client, make_storage
from s3seg_lab.fakes3 import FakeS3, Obj

OPTS = Options(caps=Capabilities.trusted(), item_retries=2, backoff_base=0.01, backoff_cap=0.05)


def _etag(text: str) -> str:
    return '"' + hashlib.md5(text.encode()).hexdigest() + '"'


@pytest.fixture
def store() -> Iterator[FakeS3]:
    fake = FakeS3().start()
    yield fake
    fake.stop()


def _storage(endpoint: str, **spec: object):  # type: ignore[no-untyped-def]
    s = ClientSpec(endpoint_url=endpoint, region="us-east-1", max_attempts=3, **spec)  # type: ignore[arg-type]
    st = make_storage(s, make_client(s))
    assert st.lean is not None and enabled_for(st.lean)
    return st


def _run(loop: CopyLoop, tasks: list[Task], st=None, opts: Options = OPTS):  # type: ignore[no-untyped-def]
    """Run the loop; finish handed-over tasks with copy_phase (as the worker does). Returns (results by id,
    what was handed over by id)."""
    handed: dict[int, SentCopy | None] = {}

    def hand_over(task: Task, sent: SentCopy | None) -> None:
        assert task.id not in handed, f"task {task.id} handed over twice"
        handed[task.id] = sent

    done = loop.run(tasks, hand_over, lambda t: None)
    assert not set(done) & set(handed), "a task both finished and handed over"
    assert set(done) | set(handed) == {t.id for t in tasks}, "a task neither finished nor handed over"
    results = dict(done)
    if st is not None:
        for task in tasks:
            if task.id in handed:
                results[task.id] = copy_phase(st, task, opts, handed[task.id])
    return results, handed


def _tasks(n: int, prefix: str = "in/") -> list[Task]:
    return [Task(i, "b", f"{prefix}k{i:05d}", "b", f"out/{prefix}k{i:05d}", _etag(f"{prefix}k{i:05d}"), 10)
            for i in range(n)]  # fmt: skip


def test_every_copy_is_made_and_proven_by_its_answer_alone(store: FakeS3) -> None:
    tasks = _tasks(300)
    store.seed("b", [t.src_key for t in tasks], 10)
    st = _storage(store.endpoint)
    loop = CopyLoop(st.lean, OPTS, gate=None, fixed=64)
    results, handed = _run(loop, tasks)
    assert not handed
    assert all(results[t.id].kind is Kind.COPIED and results[t.id].dst_etag == t.etag for t in tasks)
    objects = store.buckets["b"].objects
    assert all(objects[t.dst_key].etag == t.etag and t.src_key in objects for t in tasks)  # sources untouched
    assert loop.sent == 300 and store.requests["CopyObject"] == 300
    # The connections are kept: a second batch opens none.
    assert 0 < len(loop._idle) <= 64


def _scenario_store(store: FakeS3, tasks: list[Task]) -> None:
    """Seed the cases where the copy request is refused or the copy needs more than its answer."""
    store.seed("b", [t.src_key for t in tasks], 10)
    objects = store.buckets["b"].objects
    now = time.time()
    # 1: an identical destination already there (someone else's: a dedup)
    objects[tasks[1].dst_key] = Obj(tasks[1].etag, 10, now, None)
    # 2: a different destination already there (a conflict: never overwritten)
    objects[tasks[2].dst_key] = Obj(_etag("other"), 5, now, None)
    # 3: the source is gone
    del objects[tasks[3].src_key]
    # 4: the source was rewritten since the plan
    objects[tasks[4].src_key] = Obj(_etag("rewritten"), 10, now, None)
    # 5: an identical destination, and an earlier run may have copied it (ours)
    objects[tasks[5].dst_key] = Obj(tasks[5].etag, 10, now, None)


def _scenario_tasks() -> list[Task]:
    tasks = _tasks(8, prefix="sc/")
    t5 = tasks[5]
    tasks[5] = Task(t5.id, t5.src_bucket, t5.src_key, t5.dst_bucket, t5.dst_key, t5.etag, t5.size, resumed=True)
    return tasks


def _state(store: FakeS3) -> dict[str, str]:
    return {k: o.etag for k, o in store.buckets["b"].objects.items()}


def test_a_handed_over_task_ends_exactly_as_copy_phase_alone_ends_it() -> None:
    tasks = _scenario_tasks()
    alone, looped = FakeS3().start(), FakeS3().start()
    try:
        for s in (alone, looped):
            _scenario_store(s, tasks)
        st_alone = _storage(alone.endpoint)
        expected = {t.id: copy_phase(st_alone, t, OPTS) for t in tasks}
        st = _storage(looped.endpoint)
        results, handed = _run(CopyLoop(st.lean, OPTS, gate=None, fixed=4), tasks, st)
        assert {i: (r.kind, r.code) for i, r in results.items()} == {i: (r.kind, r.code) for i, r in expected.items()}
        assert _state(looped) == _state(alone)
        # Refused or unproven ones were handed over with the store's answer, never re-sent blind.
        assert set(handed) == {1, 2, 3, 4, 5}
        assert all(s is not None and s.error is not None and not s.error.retried for s in handed.values())
        kinds = {t.id: results[t.id].kind for t in tasks}
        assert kinds[0] is Kind.COPIED and kinds[2] is not Kind.COPIED
    finally:
        alone.stop()
        looped.stop()


def test_a_throttling_store_is_outlasted_paced_and_every_task_comes_back_once() -> None:
    fake = FakeS3(rate=300).start()
    try:
        tasks = _tasks(400)
        fake.seed("b", [t.src_key for t in tasks], 10)
        st = _storage(fake.endpoint)
        gate = Gate(AdaptiveLimit(initial=16, floor=16, max_limit=128, backoff=1.0), pacer=ThrottlePacer())
        st.lean.on_throttle = gate.throttled
        results, handed = _run(CopyLoop(st.lean, OPTS, gate=gate, fixed=128), tasks, st)
        assert fake.throttled > 0
        assert all(results[t.id].kind is Kind.COPIED for t in tasks), [
            r for r in results.values() if r.kind is not Kind.COPIED
        ][:3]
        assert all(fake.buckets["b"].objects[t.dst_key].etag == t.etag for t in tasks)
        # A throttled task that went back to the pool carries the answer, marked as possibly applied.
        assert all(s is not None and s.error is not None and s.error.retried for s in handed.values())
        assert gate.in_flight == 0  # every place taken was given back
    finally:
        fake.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_refused_connection_hands_every_task_back_unsent() -> None:
    st = _storage(f"http://127.0.0.1:{_free_port()}")
    tasks = _tasks(20)
    _, handed = _run(CopyLoop(st.lean, OPTS, gate=None, fixed=8), tasks)
    # Unsent: the pool's copy step starts from scratch (an identical destination is then not taken for ours).
    assert handed == {t.id: None for t in tasks}


class _Silent:
    """Accepts connections and reads requests; answers nothing, or (``close_after``) answers each request and then
    closes the connection without saying so."""

    def __init__(self, *, answer: bytes = b"", close: bool = False) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.answer, self.close, self.requests = answer, close, 0
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\r\n\r\n" in buf:
                _, buf = buf.split(b"\r\n\r\n", 1)
                self.requests += 1
                if self.answer:
                    conn.sendall(self.answer)
                    if self.close:
                        conn.close()
                        return

    def stop(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def test_a_store_that_never_answers_times_out_and_the_copy_counts_as_maybe_applied() -> None:
    silent = _Silent()
    try:
        st = _storage(f"http://127.0.0.1:{silent.port}", read_timeout=0.5)
        tasks = _tasks(6)
        started = time.monotonic()
        _, handed = _run(CopyLoop(st.lean, OPTS, gate=None, fixed=8), tasks)
        assert time.monotonic() - started < 10
        assert wait_for(lambda: silent.requests == 6, timeout=10)
        for sent in handed.values():
            assert sent is not None and sent.error is not None and sent.error.retryable  # may have been applied
            assert sent.error.code == "TimeoutError"
    finally:
        silent.stop()


def _closing_server() -> tuple[_Silent, list[Task]]:
    body = b'<CopyObjectResult><ETag>"abc"</ETag></CopyObjectResult>'
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    # Every task's source has the same planned ETag here, so the one canned answer proves each copy.
    tasks = [Task(t.id, t.src_bucket, t.src_key, t.dst_bucket, t.dst_key, '"abc"', 10) for t in _tasks(30)]
    return _Silent(answer=answer, close=True), tasks


def test_a_store_that_closes_each_connection_after_answering_loses_nothing() -> None:
    server, tasks = _closing_server()
    try:
        st = _storage(f"http://127.0.0.1:{server.port}")
        results, handed = _run(CopyLoop(st.lean, OPTS, gate=None, fixed=4), tasks)
        assert all(r.kind is Kind.COPIED for r in results.values()) and results
        # A request sent into a connection the server had closed: unknown whether it was read, so "maybe applied".
        assert all(s is not None and s.error is not None and s.error.retryable for s in handed.values())
    finally:
        server.stop()


def test_a_kept_connection_closed_while_idle_is_noticed_before_it_is_used(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("s3seg.copyloop._IDLE_CHECK_SECONDS", 0.0)
    server, tasks = _closing_server()
    try:
        st = _storage(f"http://127.0.0.1:{server.port}")
        loop = CopyLoop(st.lean, OPTS, gate=None, fixed=1)
        for n, task in enumerate(tasks[:5]):
            if n:  # the server's close arrives while the connection is idle between two batches
                (idle,) = [c for conns in loop._idle.values() for c in conns]
                assert select.select([idle.sock], [], [], 10)[0], "the server did not close the connection"
            results, handed = _run(loop, [task])
            assert not handed and results[task.id].kind is Kind.COPIED
    finally:
        server.stop()


def test_a_task_refused_before_it_starts_sends_nothing(store: FakeS3) -> None:
    tasks = _tasks(5)
    store.seed("b", [t.src_key for t in tasks], 10)
    st = _storage(store.endpoint)
    loop = CopyLoop(st.lean, OPTS, gate=None, fixed=4)
    refused = Result(0, Kind.ERROR, code="Aborted")
    done = loop.run(tasks, lambda t, s: pytest.fail("nothing to hand over"),
                    lambda t: Result(t.id, Kind.ERROR, code="Aborted") if t.id % 2 == 0 else None)  # fmt: skip
    assert {i for i, r in done.items() if r.code == refused.code} == {0, 2, 4}
    assert store.requests["CopyObject"] == 2 and loop.sent == 2


def test_a_lean_path_turned_off_hands_the_rest_to_the_pool(store: FakeS3) -> None:
    tasks = _tasks(10)
    store.seed("b", [t.src_key for t in tasks], 10)
    st = _storage(store.endpoint)
    st.lean.disable("test")
    _, handed = _run(CopyLoop(st.lean, OPTS, gate=None, fixed=4), tasks)
    assert handed == {t.id: None for t in tasks}
    assert store.requests["CopyObject"] == 0


def test_the_loop_is_only_for_plain_http_endpoints_without_a_blocking_rate_limiter(store: FakeS3, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    st = _storage(store.endpoint)
    assert enabled_for(st.lean)
    monkeypatch.setenv("S3SEG_COPYLOOP", "0")
    assert not enabled_for(st.lean)
    monkeypatch.delenv("S3SEG_COPYLOOP")
    spec = ClientSpec(endpoint_url=store.endpoint, region="us-east-1", retry_mode="adaptive")
    assert not enabled_for(make_storage(spec, make_client(spec)).lean)
    assert not enabled_for(None)


class _ResetOnSend:
    """A kept-alive socket whose peer has reset it: the next send fails."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)

    def send(self, data: bytes) -> int:
        raise ConnectionResetError(104, "Connection reset by peer")


def test_a_connection_reset_on_send_fails_that_copy_alone(store: FakeS3) -> None:
    tasks = _tasks(4)
    store.seed("b", [t.src_key for t in tasks], 10)
    st = _storage(store.endpoint)
    loop = CopyLoop(st.lean, OPTS, gate=None, fixed=1)
    _run(loop, tasks[:1])
    (idle,) = [c for conns in loop._idle.values() for c in conns]
    idle.sock = _ResetOnSend(idle.sock)  # type: ignore[assignment]
    results, handed = _run(loop, tasks[1:])
    # The task whose request met the reset may have been sent: handed over as "maybe applied"; the others go on.
    assert list(handed) == [1]
    assert handed[1] is not None and handed[1].error is not None and handed[1].error.retryable
    assert all(results[t.id].kind is Kind.COPIED for t in tasks[2:])
