"""How calls end at the carrier, counted where the dialer first learns it (a status callback
or an answer to its own question): `calls_ended_total{status}`.

For dashboards, not for billing: a consumer batch that fails after counting and is delivered
again counts again.
"""

from __future__ import annotations

from prometheus_client import Counter

from .statuses import TERMINAL

CALLS_ENDED = Counter(
    "calls_ended_total",
    "Calls the dialer learned had ended, by the carrier's final status",
    ["status"],
)


def count_if_ended(status: str) -> None:
    """Count a call whose status just became `status` (news, never a repeat), if that ends it."""
    if status in TERMINAL:
        CALLS_ENDED.labels(status).inc()
