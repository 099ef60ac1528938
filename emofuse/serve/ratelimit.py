"""Per-client request rate limit: a token bucket per client key (a token's id, or an
address), so one busy client cannot take every turn from the others."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

#: Most clients remembered at once; the least recently seen is forgotten first, so a
#: flood of new addresses cannot grow memory without bound.
MAX_CLIENTS = 10_000


class RateLimiter:
    """``per_minute`` requests a minute on average, in bursts of up to ``burst``."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ):
        if per_minute <= 0:
            raise ValueError(f"requests per minute must be positive, not {per_minute}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        self.rate_per_s = per_minute / 60.0
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (level, t)

    def take(self, key: str) -> float:
        """Spend one request of ``key``'s allowance: 0.0 if allowed, else the seconds to
        wait before the next request would be."""
        now = self._clock()
        level, last = self._buckets.pop(key, (float(self.burst), now))
        level = min(float(self.burst), level + (now - last) * self.rate_per_s)
        if level >= 1.0:
            wait, level = 0.0, level - 1.0
        else:
            wait = (1.0 - level) / self.rate_per_s
        self._buckets[key] = (level, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def retry_after_header(wait_s: float) -> str:
    """Whole seconds, rounded up (Retry-After takes an integer), at least 1."""
    return str(max(1, math.ceil(wait_s)))
