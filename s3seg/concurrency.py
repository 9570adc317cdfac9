"""How many requests a worker process keeps in flight, and how fast it may send them. Pure: no S3, no I/O.

``AdaptiveLimit`` is the algorithm, fed synthetic or real samples (a request's latency, the number in flight,
whether the store throttled); it reads no clock. ``Gate`` applies it to threads: a thread enters before a
request and leaves after it, and threads beyond the limit wait. ``RateLimiter`` is a token bucket that paces
requests to a fixed rate (``--max-requests-per-second``, divided among the processes by the caller).
``ThrottlePacer`` is the answer to a store that throttles by request rate (S3's 3,500 writes/s per prefix, a
shared store's quota): on "slow down" it caps this process's rate just under the rate the store was accepting,
then probes upwards, so the run settles a few percent under the store's limit instead of sawing the number in
flight up and down (measured: 58% of the limit with a x0.9 back-off on the concurrency alone).

The limit (a blend of TCP Vegas, Netflix concurrency-limits' Gradient2 and AIMD) is updated once per window of
about ``limit`` completions, i.e. about once per round trip:

- throttled in the window (503 SlowDown and the like)  -> multiplicative decrease (x``backoff``), down to
  ``min_limit`` (``backoff=1``: no decrease, a ``ThrottlePacer`` answers throttling with a rate instead);
- latency risen above ``tolerance`` x the baseline     -> decrease by the gradient ``tolerance * base / rtt``
  (at most halving), but not below ``floor`` (today's fixed default: a CPU-bound store keeps what it had);
- latency flat and the window used at least half the limit -> grow: x1.25 per window until the first decrease
  ("slow start"), then by sqrt(limit)/2 per window (probing gently near a found ceiling).

The baseline is the lowest window mean of the last ``history`` windows, so a store that becomes slower for
good is re-learnt instead of being read as congestion forever.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class AdaptiveLimit:
    """The number of requests allowed in flight, learnt from samples. Not thread-safe (``Gate`` locks)."""

    def __init__(
        self,
        *,
        initial: int = 16,
        max_limit: int = 256,
        min_limit: int = 1,
        floor: int | None = None,
        tolerance: float = 1.5,
        backoff: float = 0.9,
        min_window: int = 8,
        history: int = 100,
    ) -> None:
        if not 1 <= min_limit <= max_limit:
            raise ValueError("need 1 <= min_limit <= max_limit")
        self.max_limit = max_limit
        self.min_limit = min_limit
        self.floor = min(max_limit, max(min_limit, floor if floor is not None else initial))
        self.tolerance = tolerance
        self.backoff = backoff
        self.min_window = min_window
        self._value = float(min(max_limit, max(min_limit, initial)))
        self._means: deque[float] = deque(maxlen=history)
        self.slow_start = True
        self.decreases = 0  # how many times the limit went down (for reports and tests)
        self._reset_window()

    @property
    def limit(self) -> int:
        return int(self._value)

    @property
    def baseline(self) -> float | None:
        return min(self._means) if self._means else None

    def _reset_window(self) -> None:
        self._count = 0
        self._rtt_sum = 0.0
        self._peak = 0
        self._throttled = 0

    def on_throttle(self) -> None:
        """The store said "slow down" (the request itself is retried by whoever sent it)."""
        self._throttled += 1

    def on_sample(self, rtt: float, in_flight: int) -> bool:
        """One finished request: its latency (s) and how many were in flight when it started.

        Returns True when the limit changed (the caller may wake waiting threads).
        """
        self._count += 1
        self._rtt_sum += rtt
        self._peak = max(self._peak, in_flight)
        if self._count < max(self.min_window, self.limit):
            return False
        before = self.limit
        self._update()
        return self.limit != before

    def _update(self) -> None:
        mean = self._rtt_sum / self._count
        peak, throttled = self._peak, self._throttled
        self._reset_window()
        if throttled:
            if self.backoff < 1.0:
                self._decrease(self._value * self.backoff, self.min_limit)
            return  # a throttled window's latency (retries, backoff) says nothing about the store's load
        self._means.append(mean)
        base = min(self._means)
        gradient = min(1.0, self.tolerance * base / mean) if mean > 0 else 1.0
        if gradient < 1.0:
            self._decrease(self._value * max(0.5, gradient), self.floor)
        elif peak >= self._value / 2:  # only a limit that was used can be judged too small
            step = self._value * 0.25 if self.slow_start else math.sqrt(self._value) / 2
            self._value = min(float(self.max_limit), self._value + max(1.0, step))

    def _decrease(self, target: float, lowest: int) -> None:
        new = max(float(lowest), target)
        if new < self._value:
            self._value = new
            self.decreases += 1
            self.slow_start = False


class Gate:
    """Lets at most ``limit`` threads through at once; with an ``AdaptiveLimit`` the limit follows the store.

    ``enter`` before a request, ``leave(token)`` after it. A leaving thread wakes as many waiting threads as
    there are free places (none while it is at the limit, the usual case).
    """

    def __init__(
        self,
        limit: AdaptiveLimit | int,
        clock: Callable[[], float] = time.monotonic,
        pacer: ThrottlePacer | None = None,
    ) -> None:
        self.adaptive = limit if isinstance(limit, AdaptiveLimit) else None
        self.pacer = pacer
        self._fixed = limit if isinstance(limit, int) else 0
        self._cond = threading.Condition(threading.Lock())
        self._clock = clock
        self.in_flight = 0
        self.peak = 0
        self._waiting = 0

    @property
    def limit(self) -> int:
        return self.adaptive.limit if self.adaptive is not None else self._fixed

    def enter(self) -> tuple[float, int]:
        if self.pacer is not None:
            self.pacer.acquire()  # before the clock starts: time spent waiting for a token is not latency
        with self._cond:
            while self.in_flight >= self.limit:
                self._waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting -= 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return self._clock(), self.in_flight

    def try_enter(self) -> int | None:
        """``enter`` for a caller that cannot wait (``copyloop``): the number in flight with this request, or None
        at the limit. The caller paces itself (``pacer.reserve``) and makes the token, ``(send time, that
        number)``, for ``leave``."""
        with self._cond:
            if self.in_flight >= self.limit:
                return None
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return self.in_flight

    def leave(self, token: tuple[float, int]) -> None:
        now = self._clock()
        if self.pacer is not None:
            self.pacer.completed(now)
        with self._cond:
            self.in_flight -= 1
            if self.adaptive is not None:
                self.adaptive.on_sample(now - token[0], token[1])
            free = self.limit - self.in_flight
            if free > 0 and self._waiting:
                self._cond.notify(free)  # a thread leaving for good (end of a batch) must hand over its place

    def throttled(self) -> None:
        """Thread-safe: record a throttling answer seen anywhere in this process."""
        if self.pacer is not None:
            self.pacer.throttled()
        if self.adaptive is not None:
            with self._cond:
                self.adaptive.on_throttle()


class RateLimiter:
    """Token bucket: ``acquire`` returns when the caller may send one request (thread-safe, FIFO-ish).

    A caller reserves its token and sleeps outside the lock until it is due, so waiting costs no CPU and a
    burst never exceeds ``burst`` requests (default: 50 ms worth, at least 1).
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate * 0.05)
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()

    def reserve(self) -> float:
        """Take one token; the seconds to wait before using it (0 when it was there)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)


class ThrottlePacer:
    """Caps the request rate of one process once the store throttles it, just under what it was accepting.

    ``completed`` counts finished requests in buckets of 0.1 s. ``throttled`` (at most once per ``cooldown`` s:
    one storm is one signal) sets the cap to ``target`` x the completion rate of the last ``window`` s, or cuts
    an existing cap by ``target``. Between throttling answers the cap grows by ``growth`` of itself per second
    (about 2.5 s from 95% back to 100% at the defaults; ``first_growth`` until the first cut, since the first
    cap is measured while the run ramps up), so it saws between 95% and 100% of the rate at which
    the store throttles. A cap that does not bind costs a lock; it is dropped once it has grown past 10^6/s. With
    no cap (never throttled) a request costs one lock and one bucket increment.
    """

    def __init__(
        self,
        *,
        target: float = 0.95,
        growth: float = 0.02,
        first_growth: float = 0.15,
        window: float = 0.5,
        cooldown: float = 0.25,
        min_rate: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target, self.growth, self.first_growth = target, growth, first_growth
        self.window, self.cooldown, self.min_rate = window, cooldown, min_rate
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._counts: deque[tuple[int, int]] = deque()  # (tenth of a second, completions in it)
        self._rate: float | None = None  # the cap, requests/s (None: no cap)
        self._rate_at = 0.0  # when the cap was last set or grown
        self._next = 0.0  # when the next request may be sent (virtual time: a token bucket of 50 ms burst)
        self._last_throttle = -math.inf
        self.throttles = 0  # signals taken into account (for reports and tests)
        self.cuts = 0  # of those, how many cut an existing cap

    @property
    def rate(self) -> float | None:
        with self._lock:
            return self._rate

    def completed(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        tick = int(now * 10)
        with self._lock:
            if self._counts and self._counts[-1][0] == tick:
                self._counts[-1] = (tick, self._counts[-1][1] + 1)
                return
            self._counts.append((tick, 1))
            horizon = tick - int(self.window * 10) - 1
            while self._counts[0][0] < horizon:
                self._counts.popleft()

    def _measured(self, now: float) -> float | None:
        """Completions per second over the last ``window`` s of whole tenths (None: too little seen to say)."""
        tick = int(now * 10)
        first = tick - int(self.window * 10)
        seen = [(t, c) for t, c in self._counts if first <= t < tick]
        if not seen:
            return None
        span = (tick - max(first, seen[0][0])) / 10
        return sum(c for _, c in seen) / span if span >= 0.2 else None

    def throttled(self) -> None:
        now = self._clock()
        with self._lock:
            if now - self._last_throttle < self.cooldown:
                return
            self._last_throttle = now
            if self._rate is not None:
                self.cuts += 1
                # Already capped: cut by ``target``. Not to the measured rate: right after a storm many requests
                # sleep in their retry back-off, and the completion rate is briefly far below what the store
                # accepts (measured: cutting to it collapsed the rate to a tenth of the limit).
                self._rate = max(self.min_rate, self._rate * self.target)
            else:
                measured = self._measured(now)
                if measured is None:
                    return  # too early to know a rate: the requests' own retries absorb the first storm
                self._rate = max(self.min_rate, measured * self.target)
            self._rate_at = now
            self.throttles += 1

    def reserve(self) -> float:
        """Take the next slot under the cap; the seconds to wait before sending (0 with no cap)."""
        if self._rate is None:
            return 0.0  # never throttled (the usual case): no lock on the per-request path
        with self._lock:
            if self._rate is None:
                return 0.0
            now = self._clock()
            # Until the first cut of a cap, grow fast: the first cap comes from a rate measured while the run was
            # still ramping up, often well under what the store accepts (measured: 77% of the limit at 2%/s).
            growth = self.growth if self.cuts else self.first_growth
            self._rate *= 1.0 + growth * max(0.0, now - self._rate_at)
            self._rate_at = now
            if self._rate > 1e6:
                self._rate = None
                return 0.0
            interval = 1.0 / self._rate
            slot = max(self._next, now - max(interval, 0.05))  # an idle pacer lends at most 50 ms of burst
            self._next = slot + interval
            return max(0.0, slot - now)

    def acquire(self) -> None:
        """Wait (outside the lock) until one more request fits under the cap; at once when there is none."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
