"""Login rate limiting: a sliding window of failed attempts per (username, client address).

Password guessing is slowed to ``max_failures`` tries per ``window_s`` for one name from one
address; once that many failures lie inside the window, further attempts are refused without
checking the password until the oldest failure leaves it. A success clears the key.

The state lives in this process only. With several web processes (``mainspring web`` on many
hosts, or several uvicorn workers) each process counts on its own, so the effective limit is
``max_failures`` times the number of processes. That is acceptable for slowing guessing down;
a shared store (Redis or the database) is the step up if it ever is not.

The class is pure: the clock is injected (a monotonic ``() -> float``), so tests move time
forward instead of sleeping. It is thread-safe, since sync FastAPI routes run in a pool.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from mainspring.errors import MainspringError

DEFAULT_MAX_FAILURES = 10
DEFAULT_WINDOW_S = 300.0
# Bounds memory when someone sprays names from many addresses; the least recently failed
# keys are forgotten first.
DEFAULT_MAX_KEYS = 100_000


class TooManyAttempts(MainspringError):
    """Too many failed logins for this name from this address; ``retry_after_s`` says when
    the next attempt will be checked."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed login attempts; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class LoginKey:
    """What is counted: a name (case-folded, so ``Admin`` and ``admin`` share a budget on
    databases that compare case-insensitively) from one client address."""

    username: str
    address: str

    @classmethod
    def of(cls, username: str, address: str | None) -> LoginKey:
        return cls(username.casefold(), address or "unknown")


class LoginRateLimiter:
    """Failures per key in a sliding window; refuse while ``max_failures`` are inside it."""

    def __init__(
        self,
        max_failures: int = DEFAULT_MAX_FAILURES,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError("max_failures, window_s and max_keys must be positive")
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[LoginKey, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: LoginKey) -> float:
        """Seconds until ``key`` may try again; 0.0 when it may try now."""
        now = self._clock()
        with self._lock:
            times = self._live(key, now)
            if times is None or len(times) < self.max_failures:
                return 0.0
            return max(0.0, times[0] + self.window_s - now)

    def check(self, key: LoginKey) -> None:
        """Raise ``TooManyAttempts`` (with whole seconds, rounded up) if ``key`` is blocked."""
        wait = self.retry_after(key)
        if wait > 0:
            raise TooManyAttempts(max(1, math.ceil(wait)))

    def failed(self, key: LoginKey) -> None:
        now = self._clock()
        with self._lock:
            times = self._live(key, now)
            if times is None:
                times = deque(maxlen=self.max_failures)
                self._failures[key] = times
                while len(self._failures) > self._max_keys:
                    self._failures.popitem(last=False)
            times.append(now)
            self._failures.move_to_end(key)

    def succeeded(self, key: LoginKey) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _live(self, key: LoginKey, now: float) -> deque[float] | None:
        """The key's failures inside the window (older ones dropped); caller holds the lock."""
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times
