"""Sends due deliveries: the head of each call's (or batch's) sequence per endpoint, signed,
at most WEBHOOKS_ENDPOINT_CONCURRENCY at once per endpoint, and records every attempt with
what came of it (delivered, retry at a time, given up; an endpoint failing for too long is
disabled). Runs in every replica: a delivery is leased to one sender at a time, and one whose
sender died is taken up again when its lease runs out (delivery is at least once)."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import aiohttp
import structlog
from calls_platform.db import Pool
from calls_platform.notify import wait_for
from prometheus_client import Counter, Gauge, Histogram

from . import domain, signing, store
from .calllog import CallLog, CallLogUnavailable
from .urls import UnsafeUrl

log = structlog.get_logger(__name__)

USER_AGENT: Final = "calls-webhooks/1"
POLL_SECONDS: Final = 1.0
# a delivery whose call view could not be fetched is tried again this much later
VIEW_RETRY_SECONDS: Final = 5.0
# how long stopping waits for requests under way
DRAIN_SECONDS: Final = 10.0

DELIVERIES = Counter(
    "webhook_deliveries_total",
    "Deliveries finished, by result (delivered, failed: given up or refused)",
    ["result"],
)
ATTEMPTS = Counter(
    "webhook_delivery_attempts_total",
    "Delivery attempts, by outcome (delivered, retryable, refused)",
    ["outcome"],
)
ATTEMPT_SECONDS = Histogram(
    "webhook_delivery_attempt_duration_seconds",
    "How long a delivery attempt took (to the response's status and excerpt)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
OLDEST_PENDING = Gauge(
    "webhook_oldest_pending_age_seconds",
    "Age of the oldest delivery not yet delivered or given up, per endpoint (0: none)",
    ["endpoint_id"],
)
PENDING = Gauge(
    "webhook_pending_deliveries", "Deliveries not yet delivered or given up", ["endpoint_id"]
)
ENDPOINTS_DISABLED = Counter(
    "webhook_endpoints_disabled_total", "Endpoints disabled for failing too long"
)
IN_FLIGHT = Gauge("webhook_deliveries_in_flight", "Deliveries being sent by this replica")


@dataclass(frozen=True)
class SenderSettings:
    per_endpoint: int = 5
    max_in_flight: int = 100
    connect_timeout_seconds: float = 5.0
    timeout_seconds: float = 15.0
    excerpt_bytes: int = 1024
    disable_after_seconds: float = 24 * 3600.0
    policy: domain.RetryPolicy = field(default_factory=domain.RetryPolicy)

    @property
    def lease_seconds(self) -> float:
        return self.timeout_seconds + 10.0


@dataclass(frozen=True)
class Response:
    status: int | None
    excerpt: str | None
    error: str | None
    retry_after: str | None
    latency_ms: int


async def post(
    http: aiohttp.ClientSession, url: str, body: str, headers: dict[str, str], excerpt_bytes: int
) -> Response:
    """One POST: no redirect followed, at most `excerpt_bytes` of the response read."""
    started = time.perf_counter()
    try:
        async with http.post(
            url,
            data=body.encode(),
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
            allow_redirects=False,
        ) as resp:
            raw = await resp.content.read(excerpt_bytes)
            # kept in a text column: PostgreSQL takes no NUL
            excerpt = raw.decode("utf-8", "replace").replace("\x00", "\\u0000")
            return Response(
                resp.status,
                excerpt,
                None,
                resp.headers.get("Retry-After"),
                int((time.perf_counter() - started) * 1000),
            )
    except UnsafeUrl as exc:
        return Response(None, None, f"refused: {exc}", None, _ms(started))
    except TimeoutError:
        return Response(None, None, "timed out", None, _ms(started))
    except (aiohttp.ClientError, OSError) as exc:
        return Response(None, None, f"{type(exc).__name__}: {exc}", None, _ms(started))


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def body_of(payload: dict[str, Any]) -> str:
    """The exact bytes sent and signed: the envelope's fields in their documented order."""
    return json.dumps(
        {k: payload.get(k) for k in ("id", "type", "created_at", "data")}, separators=(",", ":")
    )


def signing_secrets(row: dict[str, Any], box: signing.SecretBox, now: datetime) -> list[str]:
    """The endpoint's secret, and the previous one while its grace period lasts."""
    secrets = [box.open(row["secret_sealed"])]
    expires = row["previous_secret_expires_at"]
    if row["previous_secret_sealed"] and expires is not None and expires > now:
        secrets.append(box.open(row["previous_secret_sealed"]))
    return secrets


class Sender:
    def __init__(
        self,
        pool: Pool,
        http: aiohttp.ClientSession,
        box: signing.SecretBox,
        call_log: CallLog,
        settings: SenderSettings,
        *,
        wakeup: asyncio.Event,
        clock: Callable[[], datetime],
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._pool = pool
        self._http = http
        self._box = box
        self._call_log = call_log
        self._settings = settings
        self._wakeup = wakeup
        self._clock = clock
        self._rand = rand
        self._in_flight: dict[uuid.UUID, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._send_due()
                except Exception:
                    log.exception("webhook_sender_failed")
                await wait_for(self._wakeup, POLL_SECONDS)
        finally:
            # stopping: let the requests under way finish and be recorded (a delivery cut off
            # is sent again once its lease runs out)
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=DRAIN_SECONDS)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def send_due_now(self) -> None:
        """Send what is due now and wait until those attempts are recorded (tests, tools)."""
        await self._send_due()
        await asyncio.gather(*self._tasks)

    async def _send_due(self) -> None:
        free = self._settings.max_in_flight - sum(self._in_flight.values())
        if free <= 0:
            return
        now = self._clock()
        async with self._pool.connection() as conn:
            due = await store.due(conn, now=now, limit=max(free * 4, 50))
            chosen = domain.choose(
                due, self._in_flight, per_endpoint=self._settings.per_endpoint, free=free
            )
            rows = await store.lease(
                conn, [d.id for d in chosen], now=now, seconds=self._settings.lease_seconds
            )
        for row in rows:
            endpoint_id = row["endpoint_id"]
            self._in_flight[endpoint_id] = self._in_flight.get(endpoint_id, 0) + 1
            IN_FLIGHT.inc()
            task = asyncio.create_task(self._deliver(row), name=f"webhook-{row['id']}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, row: dict[str, Any]) -> None:
        endpoint_id = row["endpoint_id"]
        try:
            await self._attempt(row)
        except Exception:
            # the lease runs out and another pass takes it up again
            log.exception("webhook_delivery_crashed", delivery_id=str(row["id"]))
        finally:
            left = self._in_flight.get(endpoint_id, 1) - 1
            if left:
                self._in_flight[endpoint_id] = left
            else:
                self._in_flight.pop(endpoint_id, None)
            IN_FLIGHT.dec()
            self._wakeup.set()  # a slot is free, and the sequence's next delivery may be due

    async def _attempt(self, row: dict[str, Any]) -> None:
        payload = dict(row["payload"])
        if row["data_pending"]:
            try:
                payload["data"] = await self._call_log.view(
                    organization_id=row["organization_id"],
                    event_type=row["event_type"],
                    call_id=row["call_id"],
                    batch_id=row["batch_id"],
                )
            except CallLogUnavailable as exc:
                async with self._pool.connection() as conn:
                    until = self._clock() + timedelta(seconds=VIEW_RETRY_SECONDS)
                    await store.postpone(conn, row["id"], until, f"call log unavailable: {exc}")
                return
            async with self._pool.connection() as conn:
                await store.fill_data(conn, row["id"], payload["data"])
        at = self._clock()
        body = body_of(payload)
        headers = signing.headers(row["message_id"], body, at, signing_secrets(row, self._box, at))
        response = await post(self._http, row["url"], body, headers, self._settings.excerpt_bytes)
        await self._record(row, at, response)

    async def _record(self, row: dict[str, Any], at: datetime, response: Response) -> None:
        settings = self._settings
        outcome = domain.classify(response.status)
        if response.error is not None and response.error.startswith("refused:"):
            outcome = "refused"  # the address is not allowed: trying again will not help
        now = self._clock()
        number = row["attempts"] + 1
        decision = domain.decide(
            settings.policy,
            outcome=outcome,
            attempts=number,
            first_attempt_at=row["first_attempt_at"] or at,
            now=now,
            retry_after_seconds=domain.parse_retry_after(response.retry_after, now),
            rand=self._rand,
        )
        state = {
            "delivered": store.DELIVERED,
            "retry": store.PENDING,
            "give_up": store.FAILED,
        }[decision.kind]
        error = None
        if outcome != "delivered":
            error = response.error or f"HTTP {response.status}"
            if decision.reason:
                error = f"{error}: {decision.reason}"
        attempt = store.Attempt(
            at=at,
            status=response.status,
            latency_ms=response.latency_ms,
            excerpt=response.excerpt,
            error=response.error,
        )
        endpoint_id = row["endpoint_id"]
        async with self._pool.connection() as conn, conn.transaction():
            await store.record_attempt(
                conn,
                row["id"],
                number,
                attempt,
                state=state,
                next_attempt_at=decision.retry_at,
                error=error,
            )
            if outcome == "delivered":
                await store.endpoint_succeeded(conn, endpoint_id)
            else:
                failing_since = await store.endpoint_failing_since(conn, endpoint_id) or at
                reason = None
                if domain.should_disable(failing_since, now, settings.disable_after_seconds):
                    reason = (
                        f"disabled: every attempt failed since {failing_since.isoformat()}"
                        f" ({settings.disable_after_seconds / 3600:g} h)"
                    )
                    ENDPOINTS_DISABLED.inc()
                    log.warning("webhook_endpoint_disabled", endpoint_id=str(endpoint_id))
                await store.endpoint_failed(conn, endpoint_id, at, disable_reason=reason)
        ATTEMPTS.labels(outcome).inc()
        ATTEMPT_SECONDS.observe(response.latency_ms / 1000)
        if decision.kind == "delivered":
            DELIVERIES.labels("delivered").inc()
        elif decision.kind == "give_up":
            DELIVERIES.labels("failed").inc()
        log.info(
            "webhook_attempt",
            delivery_id=str(row["id"]),
            endpoint_id=str(endpoint_id),
            event_type=row["event_type"],
            attempt=number,
            status=response.status,
            error=response.error,
            decision=decision.kind,
            latency_ms=response.latency_ms,
        )


async def watch_backlog(pool: Pool, clock: Callable[[], datetime], every: float = 5.0) -> None:
    """Keep the backlog gauges current (the oldest undelivered message's age per endpoint)."""
    while True:
        try:
            async with pool.connection() as conn:
                rows = await store.backlog(conn, clock())
            OLDEST_PENDING.clear()
            PENDING.clear()
            for row in rows:
                OLDEST_PENDING.labels(str(row["endpoint_id"])).set(row["oldest_age_seconds"])
                PENDING.labels(str(row["endpoint_id"])).set(row["pending"])
        except Exception:
            log.exception("webhook_backlog_failed")
        await asyncio.sleep(every)
