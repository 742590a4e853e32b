"""Composition root of the dialer: builds every dependency and runs the service.

Every replica consumes requests from RabbitMQ into the dials table; the replica holding the
dialer leadership lock runs the dial loop, so the dial rate is global; the one holding the
dialer-intake lock tails the event store for requests the queue never brought (dialer.intake).
Every replica also competes for the outbox-relay leadership.
"""

from __future__ import annotations

import asyncio
import functools

import structlog
from aiohttp import web
from calls_platform import amqp, leader, queue_depth, topology
from calls_platform.notify import Listener
from calls_platform.service import Parts, Service, repeat, run_service, service_app

from . import backlog, claims
from .canceler import CarrierCanceler
from .config import Settings
from .consumer import QUEUES, Handlers
from .dials import CANCEL_CHANNEL, WORK_CHANNEL
from .intake import control_watchdog, intake_watchdog
from .scheduler import DialLoop
from .twilio_carrier import TwilioCarrier
from .watchdog import StaleCallWatchdog

log = structlog.get_logger(__name__)

SERVICE = Service("dialer", schema="dialer")
migrate = SERVICE.migrate

# how often the stale-call watchdog asks about calls whose callbacks stopped coming
WATCHDOG_SECONDS = 5.0


def create_app(settings: Settings) -> web.Application:
    async def build(parts: Parts) -> None:
        url = settings.database_url
        pool = await parts.pool(
            url, name="dialer", max_size=20, settings=claims.SESSION, ready=True
        )
        carrier = TwilioCarrier(settings.twilio)
        parts.close_with(carrier.close)
        broker, _ = await parts.broker(settings.amqp_url, prefetch=1)  # its consumers: own channels
        parts.relay(url, pool, broker)
        parts.task(
            queue_depth.sample_forever(broker, [*QUEUES, amqp.DEAD_LETTER_QUEUE]),
            name="queue-depth",
        )
        parts.task(
            backlog.sample_forever(pool, interval_seconds=settings.backlog_sample_seconds),
            name="dial-backlog",
        )
        work = Listener(url, WORK_CHANNEL)
        dial_loop = DialLoop(
            pool,
            carrier,
            work,
            calls_per_second=settings.calls_per_second,
            max_in_flight=settings.max_in_flight,
            max_attempts=settings.max_attempts,
            ambiguous_safe_delay_seconds=settings.ambiguous_safe_delay_seconds,
        )
        parts.task(work.run(), name="work-listener")
        handlers = Handlers(pool, recording_grace_seconds=settings.recording_grace_seconds)
        # cancels and campaign controls that came while no dialer ran take effect before this
        # replica may dial: a batch canceled during a restart is not dialed by the restart
        # (its requests, taken in afterwards, are recorded canceled)
        controls = await parts.take_waiting(broker, topology.DIALER_CONTROL, handlers.handle_many)
        log.info("dialer_controls_taken", waiting=controls)
        # the dial loop runs on one replica at a time, so the dial rate is global
        parts.task(leader.run_as_leader(url, "dialer", dial_loop.run), name="dial-loop")
        # calls whose carrier callbacks stopped coming, asked about at the carrier
        watchdog = StaleCallWatchdog(
            pool,
            carrier,
            stale_after_seconds=settings.stale_after_seconds,
            in_progress_check_seconds=settings.in_progress_check_seconds,
            recording_grace_seconds=settings.recording_grace_seconds,
        )
        parts.task(
            leader.run_as_leader(
                url,
                "dialer-watchdog",
                functools.partial(
                    repeat,
                    watchdog.check_once,
                    every_seconds=WATCHDOG_SECONDS,
                    name="stale-call-watchdog",
                ),
            ),
            name="stale-call-watchdog",
        )
        # belt and braces behind dialer.requests and dialer.control: requests, cancels and
        # campaign rules whose message never came; one leadership (each holds a connection)
        grace = settings.intake_grace_seconds
        watchdogs = (
            intake_watchdog(pool, grace_seconds=grace),
            control_watchdog(pool, grace_seconds=grace),
        )

        async def tail_the_store() -> None:
            await asyncio.gather(*(w.run() for w in watchdogs))

        parts.task(
            leader.run_as_leader(url, "dialer-intake", tail_the_store), name="intake-watchdogs"
        )
        cancels = Listener(url, CANCEL_CHANNEL)
        canceler = CarrierCanceler(
            pool,
            carrier,
            queue_limit_seconds=settings.carrier_queue_limit_seconds,
            wakeup=cancels.subscribe(),
            recording_grace_seconds=settings.recording_grace_seconds,
        )
        parts.task(cancels.run(), name="cancel-listener")
        # apart from the dial loop: canceling is not dialing, and never waits behind it
        parts.task(
            leader.run_as_leader(url, "dialer-carrier-cancels", canceler.run),
            name="carrier-canceler",
        )
        # taken last, so that on stop the consumers stop taking work first; then the dials
        # in flight finish and record their results
        for name in QUEUES:
            await parts.consume_in_batches(broker, name, handlers.handle_many, prefetch=1000)

    return service_app(SERVICE, settings, build)


def main() -> None:
    run_service(SERVICE, Settings.from_env, create_app, shutdown_timeout=20)


if __name__ == "__main__":
    main()
