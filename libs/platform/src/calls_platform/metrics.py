"""Prometheus series shared by every service. Service-specific series live in the service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route and status",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_APPENDED = Counter("events_appended_total", "Events appended to the event store", ["type"])
EVENTS_PUBLISHED = Counter("events_published_total", "Events relayed to RabbitMQ, confirmed")
OUTBOX_BACKLOG = Gauge("outbox_backlog_events", "Committed events not yet relayed to RabbitMQ")
