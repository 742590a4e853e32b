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
EVENTS_UNROUTABLE = Counter(
    "events_unroutable_total",
    "Relay publishes the broker returned although the topology binds their type (a queue or"
    " binding is missing): the relay holds its checkpoint and retries",
    ["event_type"],
)
OUTBOX_BACKLOG = Gauge("outbox_backlog_events", "Committed events not yet relayed to RabbitMQ")
# Readers of the event store (the outbox relay, the call-log projector), by reader name. Lag
# counts what is committed after the reader's checkpoint, including what it cannot read yet
# because an older transaction is still open (see EVENTSTORE_OLDEST_XACT_AGE).
EVENTSTORE_READER_LAG_SECONDS = Gauge(
    "eventstore_reader_lag_seconds",
    "Age of the oldest committed event a reader has not taken yet (0: caught up)",
    ["reader"],
)
EVENTSTORE_READER_BACKLOG = Gauge(
    "eventstore_reader_backlog_events",
    "Committed events after a reader's checkpoint (counted up to 100,000)",
    ["reader"],
)
EVENTSTORE_OLDEST_XACT_AGE = Gauge(
    "eventstore_oldest_xact_age_seconds",
    "Age of the oldest open transaction holding a transaction id anywhere in the PostgreSQL"
    " cluster: every event-store reader waits for it",
)
QUEUE_CONSUMER_LAG_SECONDS = Gauge(
    "queue_consumer_lag_seconds",
    "Age of the last event taken from a queue when it was taken (appended to consumed)",
    ["queue"],
)
QUEUE_MESSAGES_CONSUMED = Counter(
    "queue_messages_consumed_total", "Messages taken from a queue, by outcome", ["queue", "result"]
)
QUEUE_MESSAGES_READY = Gauge(
    "queue_messages_ready",
    "Messages ready in a queue, by passive declare every few seconds (calls_platform.queue_depth)",
    ["queue"],
)
QUEUE_CONSUMERS = Gauge("queue_consumers", "Consumers of a queue, by passive declare", ["queue"])
