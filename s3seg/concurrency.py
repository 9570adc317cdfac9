"""How many requests a worker process keeps in flight, and how fast it may send them. Pure: no S3, no I/O.

``AdaptiveLimit`` is the algorithm, fed synthetic or real samples (a request's latency, the number in flight,
whether the store throttled); it reads no clock. ``Gate`` applies it to threads: a thread enters before a
request and leaves after it, and threads beyond the limit wait. ``RateLimiter`` is a token bucket that paces
requests to a fixed rate (``--max-requests-per-second``, divided among the processes by the caller).

The limit (a blend of TCP Vegas, Netflix concurrency-limits' Gradient2 and AIMD) is updated once per window of
about ``limit`` completions, i.e. about once per round trip:

- throttled in the window (503 SlowDown and the like)  -> multiplicative decrease (x0.9), down to ``min_limit``;
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

    def __init__(self, limit: AdaptiveLimit | int, clock: Callable[[], float] = time.monotonic) -> None:
        self.adaptive = limit if isinstance(limit, AdaptiveLimit) else None
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

    def leave(self, token: tuple[float, int]) -> None:
        now = self._clock()
        with self._cond:
            self.in_flight -= 1
            if self.adaptive is not None:
                self.adaptive.on_sample(now - token[0], token[1])
            free = self.limit - self.in_flight
            if free > 0 and self._waiting:
                self._cond.notify(free)  # a thread leaving for good (end of a batch) must hand over its place

    def throttled(self) -> None:
        """Thread-safe: record a throttling answer seen anywhere in this process."""
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
