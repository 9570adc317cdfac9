"""The adaptive limit, the gate and the rate limiter, on synthetic latencies and throttle signals (no clock)."""

from __future__ import annotations

import threading

import pytest

from s3seg.concurrency import AdaptiveLimit, Gate, RateLimiter, ThrottlePacer


def feed(limit: AdaptiveLimit, rtt: float, windows: int, *, throttle_every: int = 0) -> list[int]:
    """``windows`` full windows of samples at ``rtt`` with the limit fully used; the limit after each."""
    seen = []
    for w in range(windows):
        if throttle_every and w % throttle_every == 0:
            limit.on_throttle()
        for _ in range(max(limit.min_window, limit.limit)):
            limit.on_sample(rtt, limit.limit)
        seen.append(limit.limit)
    return seen


def test_grows_to_the_upper_bound_while_latency_stays_flat() -> None:
    limit = AdaptiveLimit(initial=16, max_limit=256)
    seen = feed(limit, 0.050, 40)
    assert seen == sorted(seen)  # never went down
    assert limit.limit == 256
    assert seen.index(256) < 20  # slow start: x1.25 per window, not +1


def test_never_exceeds_the_upper_bound_nor_goes_below_one() -> None:
    limit = AdaptiveLimit(initial=4, max_limit=8)
    assert max(feed(limit, 0.01, 30)) == 8
    throttled = AdaptiveLimit(initial=8, max_limit=8)
    assert min(feed(throttled, 0.01, 60, throttle_every=1)) == 1


def test_backs_off_multiplicatively_on_throttling() -> None:
    limit = AdaptiveLimit(initial=100, max_limit=256)
    limit.on_throttle()
    feed(limit, 0.050, 1)
    assert limit.limit == 90
    assert not limit.slow_start and limit.decreases == 1


def test_throttling_can_go_below_the_floor_latency_cannot() -> None:
    limit = AdaptiveLimit(initial=16, floor=16, max_limit=256)
    feed(limit, 0.010, 3)  # baseline 10 ms
    feed(limit, 0.100, 20)  # 10x the latency: shrink, but not below the floor
    assert limit.limit == 16
    feed(limit, 0.100, 5, throttle_every=1)
    assert limit.limit < 16


def test_rising_latency_shrinks_the_limit_by_the_gradient() -> None:
    limit = AdaptiveLimit(initial=16, floor=4, max_limit=256)
    feed(limit, 0.020, 10)  # grow on a flat 20 ms
    top = limit.limit
    assert top > 16
    feed(limit, 0.060, 1)  # 3x the baseline: gradient 1.5 * 20 / 60 = 0.5
    assert limit.limit == int(top * 0.5) or limit.limit == max(4, int(top * 0.5))


def test_latency_within_tolerance_still_grows() -> None:
    limit = AdaptiveLimit(initial=16, max_limit=256, tolerance=1.5)
    feed(limit, 0.020, 1)
    before = limit.limit
    feed(limit, 0.028, 1)  # +40%: inside the tolerance
    assert limit.limit > before


def test_does_not_grow_when_the_limit_is_not_used() -> None:
    limit = AdaptiveLimit(initial=16, max_limit=256)
    for _ in range(200):
        limit.on_sample(0.05, 3)  # only 3 in flight: the application, not the store, is the bottleneck
    assert limit.limit == 16


def test_converges_below_a_synthetic_rate_limit() -> None:
    """A store allowing 50 in flight (1,000 req/s at 50 ms): throttled above, the limit hovers near 50."""
    limit = AdaptiveLimit(initial=16, max_limit=256)
    history = []
    for _ in range(300):
        if limit.limit > 50:
            limit.on_throttle()
        for _ in range(max(limit.min_window, limit.limit)):
            limit.on_sample(0.05, limit.limit)
        history.append(limit.limit)
    tail = history[100:]
    assert max(tail) <= 60
    assert sum(tail) / len(tail) >= 0.8 * 50


def test_baseline_follows_a_store_that_became_slower_for_good() -> None:
    limit = AdaptiveLimit(initial=16, max_limit=256, history=10)
    feed(limit, 0.010, 5)
    feed(limit, 0.100, 30)
    assert limit.baseline == pytest.approx(0.100)
    before = limit.limit
    feed(limit, 0.100, 3)
    assert limit.limit > before  # growing again at the new latency


def test_rejects_inconsistent_bounds() -> None:
    with pytest.raises(ValueError):
        AdaptiveLimit(min_limit=10, max_limit=5)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_gate_fixed_lets_exactly_the_limit_through() -> None:
    gate = Gate(2)
    a, b = gate.enter(), gate.enter()
    entered = threading.Event()

    def third() -> None:
        token = gate.enter()
        entered.set()
        gate.leave(token)

    t = threading.Thread(target=third)
    t.start()
    assert not entered.wait(0.2)  # blocked at the limit
    gate.leave(a)
    assert entered.wait(5)
    t.join()
    gate.leave(b)
    assert gate.in_flight == 0 and gate.peak == 2


def test_gate_wakes_waiting_threads_when_the_adaptive_limit_grows() -> None:
    clock = FakeClock()
    gate = Gate(AdaptiveLimit(initial=2, max_limit=4, min_window=2), clock=clock)
    first = [gate.enter(), gate.enter()]
    entered = threading.Semaphore(0)

    def waiter() -> None:
        gate.enter()
        entered.release()

    threads = [threading.Thread(target=waiter) for _ in range(2)]
    for t in threads:
        t.start()
    clock.now = 0.05
    for token in first:  # a full window at a flat latency: the limit grows, the waiters get in
        gate.leave(token)
        if gate.limit <= 2:
            gate.leave(gate.enter())
    assert entered.acquire(timeout=5) and entered.acquire(timeout=5)
    for t in threads:
        t.join()
    assert gate.limit > 2


def test_gate_records_throttling_in_the_adaptive_limit() -> None:
    limit = AdaptiveLimit(initial=10, max_limit=10, min_window=1)
    gate = Gate(limit, clock=FakeClock())
    gate.throttled()
    for _ in range(10):
        gate.leave(gate.enter())
    assert limit.limit == 9


def test_rate_limiter_paces_to_the_rate_after_the_burst() -> None:
    clock = FakeClock()
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.now += s

    rl = RateLimiter(100.0, burst=5, clock=clock, sleep=sleep)
    for _ in range(105):
        rl.acquire()
    # 5 from the burst, then 100 more at 100/s: about one second of waiting in total
    assert clock.now == pytest.approx(1.0, rel=0.02)
    assert len(slept) == 100


def test_rate_limiter_reservations_queue_fairly() -> None:
    clock = FakeClock()
    rl = RateLimiter(10.0, burst=1, clock=clock)
    waits = [rl.reserve() for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_rate_limiter_rejects_a_non_positive_rate() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)


def simulate_throttled_store(
    *,
    rate: float,
    processes: int = 2,
    threads: int = 32,
    latency: float = 0.05,
    seconds: float = 30.0,
    seed: int = 1,
    paced_retries: bool = True,
    pacer: type[ThrottlePacer] | None = None,
) -> dict[str, float]:
    """Discrete-event model of a run against a store answering 503 above ``rate`` requests/s (a token bucket of
    ``rate / 20`` burst, as ``fakes3 --rate``): ``processes`` pacers, each with ``threads`` requests in a loop.
    A request waits for its pacer, then goes to the store; a 503 tells the pacer and is retried after a random
    back-off (with ``paced_retries``, as the lean path does with a pacer: at most 0.1 s, then the pacer again;
    otherwise exponential up to 20 s, as botocore)."""
    import heapq
    import random

    rng = random.Random(seed)
    clock = FakeClock()
    pacers = [(pacer or ThrottlePacer)(clock=clock) for _ in range(processes)]
    tokens, stamp, burst = rate / 20, 0.0, rate / 20
    accepted = throttled = sent = 0
    warmup = 5.0
    # (time, sequence, process, sends so far for this request, passed the pacer for the next send)
    events = [(rng.random() * 0.01, i, i % processes, 0, False) for i in range(threads * processes)]
    heapq.heapify(events)
    seq = len(events)
    while events:
        now, _, p, sends, paced = heapq.heappop(events)
        if now > seconds:
            break
        clock.now = now
        seq += 1
        if not paced and (sends == 0 or paced_retries):
            heapq.heappush(events, (now + pacers[p].reserve(), seq, p, sends, True))
            continue
        sent += 1
        tokens = min(burst, tokens + (now - stamp) * rate)
        stamp = now
        clock.now = now + latency
        if tokens >= 1:  # accepted: the thread goes on with a new request
            tokens -= 1
            pacers[p].completed(now + latency)
            accepted += now >= warmup
            heapq.heappush(events, (now + latency, seq, p, 0, False))
        else:  # 503 SlowDown: back off, then send again
            throttled += 1
            pacers[p].throttled()
            # the lean path's back-off: exponential, or at most 0.1 s when the pacer spaces the retries
            backoff = rng.random() * min(0.1 if paced_retries else 20.0, 2.0**sends)
            heapq.heappush(events, (now + latency + backoff, seq, p, sends + 1, False))
    return {"accepted_share": accepted / (seconds - warmup) / rate, "throttled_share": throttled / sent}


class _NeverCaps(ThrottlePacer):
    def throttled(self) -> None:
        pass


@pytest.mark.parametrize(("rate", "threads"), [(200.0, 128), (1000.0, 32), (1000.0, 128), (3500.0, 128)])
def test_pacer_settles_just_under_a_throttling_store(rate: float, threads: int) -> None:
    paced = simulate_throttled_store(rate=rate, threads=threads)
    assert 0.90 <= paced["accepted_share"] <= 1.01
    assert paced["throttled_share"] < 0.15  # no retry storm (0.13 at 256 threads against a 200/s store)
    # the same run with retries alone answering the throttling: several times the 503s
    storm = simulate_throttled_store(rate=rate, threads=threads, pacer=_NeverCaps)
    assert paced["throttled_share"] <= 0.5 * storm["throttled_share"]


def test_pacer_costs_nothing_until_throttled() -> None:
    clock = FakeClock()
    pacer = ThrottlePacer(clock=clock)
    assert all(pacer.reserve() == 0.0 for _ in range(1000)) and pacer.rate is None
    for i in range(10):  # 1 s at 100/s, then a throttling answer: cap at 95% of it
        clock.now = i * 0.1
        for _ in range(10):
            pacer.completed()
    pacer.throttled()
    assert pacer.rate == pytest.approx(95.0, rel=0.15)
    pacer.throttled()  # the same storm (within the cooldown): one signal
    assert pacer.throttles == 1
    clock.now += 0.5
    pacer.throttled()
    assert pacer.throttles == 2 and pacer.rate is not None and pacer.rate < 95.0
