"""Request rate limits on writes: a token bucket per organization and per API key.

The buckets live in PostgreSQL, so the limit is the same however many gateway replicas run.
One statement refills a bucket for the time since it was last touched and takes a token, under
the row's lock; when it has less than a token left, nothing is taken and the caller learns how
long until one is there (`Retry-After`).

Taking a token must not serialize an organization's writes: the row's lock is held until the
commit, and a durable commit waits for the WAL flush, so every request of one organization
waited in line for the previous one's fsync. The limiter's pool runs with
`synchronous_commit = off` (`RateLimiter.SESSION`): each take is one autocommit statement whose
lock is released as soon as the UPDATE is done, without waiting for the WAL flush. A crash can
forget the last fraction of a second of taken tokens, which only lets a few more requests
through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from calls_platform.db import Pool
from prometheus_client import Counter

from .auth import Principal

RATE_LIMITED = Counter(
    "rate_limited_requests_total", "Write requests refused with 429, by bucket", ["scope"]
)

_TAKE = """
INSERT INTO gateway.rate_limits AS b (bucket, tokens, updated_at)
VALUES (%(bucket)s, %(burst)s - 1, clock_timestamp())
ON CONFLICT (bucket) DO UPDATE SET
    tokens = least(%(burst)s, b.tokens + %(rate)s
        * extract(epoch FROM clock_timestamp() - b.updated_at)) - 1,
    updated_at = clock_timestamp()
WHERE least(%(burst)s, b.tokens + %(rate)s
        * extract(epoch FROM clock_timestamp() - b.updated_at)) >= 1
RETURNING tokens
"""

_SHORTFALL = """
SELECT 1 - least(%(burst)s, tokens + %(rate)s
        * extract(epoch FROM clock_timestamp() - updated_at)) AS missing
FROM gateway.rate_limits WHERE bucket = %(bucket)s
"""


@dataclass(frozen=True)
class Limit:
    per_second: float
    burst: int

    @property
    def enabled(self) -> bool:
        return self.per_second > 0 and self.burst > 0


@dataclass(frozen=True)
class Limited:
    scope: str  # "organization" or "api key"
    retry_after_seconds: int
    limit: Limit


class RateLimiter:
    SESSION: Final = {"synchronous_commit": "off"}
    """Settings of the limiter's own pool (see the module doc)."""

    def __init__(self, pool: Pool, *, organization: Limit, api_key: Limit) -> None:
        self._pool = pool
        self._organization = organization
        self._api_key = api_key

    async def take(self, who: Principal) -> Limited | None:
        """Take one token from every bucket the caller draws on; None if the request may go."""
        buckets: list[tuple[str, str, Limit]] = []
        if who.api_key_id is not None and self._api_key.enabled:
            buckets.append(("api key", f"key:{who.api_key_id}", self._api_key))
        if self._organization.enabled:
            buckets.append(("organization", f"org:{who.organization_id}", self._organization))
        if not buckets:
            return None
        async with self._pool.connection() as conn:
            for scope, bucket, limit in buckets:
                params = {"bucket": bucket, "rate": limit.per_second, "burst": float(limit.burst)}
                cur = await conn.execute(_TAKE, params)
                if await cur.fetchone() is not None:
                    continue
                cur = await conn.execute(_SHORTFALL, params)
                row = await cur.fetchone()
                missing = float(row["missing"]) if row else 1.0
                wait = max(1, math.ceil(max(missing, 0.0) / limit.per_second))
                RATE_LIMITED.labels(scope).inc()
                return Limited(scope=scope, retry_after_seconds=wait, limit=limit)
        return None
