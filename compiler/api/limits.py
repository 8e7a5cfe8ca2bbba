"""Request limits: body size, and a token bucket per client address (separate for job creation).

Behind an SSH tunnel every client is 127.0.0.1, so the buckets also bound the service as a whole.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

MAX_BODY = 64 * 1024


@dataclass
class Bucket:
    rate: float  # tokens per second
    burst: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def take(self) -> float:
        """0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, rate: float, burst: float, max_clients: int = 1024):
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self.buckets: dict[str, Bucket] = {}
        self.lock = threading.Lock()

    def wait_for(self, client: str) -> float:
        if self.rate <= 0:
            return 0.0
        with self.lock:
            bucket = self.buckets.get(client)
            if bucket is None:
                if len(self.buckets) >= self.max_clients:
                    self.buckets.clear()
                bucket = self.buckets[client] = Bucket(self.rate, self.burst)
            return bucket.take()


@dataclass(frozen=True)
class Limits:
    max_body: int = MAX_BODY
    requests_per_s: float = 50.0  # every request
    burst: float = 100.0
    creates_per_min: float = 30.0  # POST /v1/customization/jobs
    request_s: float = 30.0  # one request, from its headers to the end of its answer
