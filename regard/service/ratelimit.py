"""Per-key request rate limits: a token bucket per key id.

Each key's bucket holds up to one minute's allowance (`rate_per_minute` requests) and refills at
`rate_per_minute / 60` per second, so a key may burst its whole minute at once and then goes at its
steady rate. A request spends one token; with none left, `check` says how long until one is back
(the `Retry-After` of a 429 answer).

The buckets live in the memory of one process. With N worker processes each keeps its own, so the
effective limit is up to N times the configured one; use one worker, or a limit divided by N, where
the exact figure matters. Buckets are forgotten on restart (every key starts full).

Call `check` only with the id of a key that has authenticated: the limiter keeps a bucket per id it
sees, and idle full buckets are dropped only when there are many.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter"]


@dataclass
class _Bucket:
    capacity: float
    tokens: float
    updated: float


class RateLimiter:
    """Thread-safe token buckets keyed by key id. `clock` (seconds, monotonic) is injectable for tests."""

    PRUNE_ABOVE = 10_000  # buckets kept before idle full ones are dropped

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key_id: str, rate_per_minute: int | None) -> float | None:
        """Spend one request of `key_id`'s allowance: None if allowed (or the key has no limit), else
        the seconds until a request would be allowed (nothing is spent then)."""
        if rate_per_minute is None:
            return None
        if rate_per_minute < 1:
            raise ValueError("rate_per_minute must be at least 1 (or None for no limit)")
        capacity = float(rate_per_minute)
        per_second = capacity / 60.0
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key_id)
            if bucket is None:
                if len(self._buckets) >= self.PRUNE_ABOVE:
                    self._prune(now)
                bucket = self._buckets[key_id] = _Bucket(capacity, capacity, now)
            else:
                elapsed = max(0.0, now - bucket.updated)
                if bucket.capacity != capacity:  # the key's limit changed: keep what was spent
                    bucket.tokens = min(capacity, bucket.tokens)
                    bucket.capacity = capacity
                bucket.tokens = min(capacity, bucket.tokens + elapsed * per_second)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / per_second

    def _prune(self, now: float) -> None:
        """Drop buckets that would be full by now (nothing to remember about them)."""
        full = [
            key
            for key, b in self._buckets.items()
            if b.tokens + max(0.0, now - b.updated) * b.capacity / 60.0 >= b.capacity
        ]
        for key in full:
            del self._buckets[key]
