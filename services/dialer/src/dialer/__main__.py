"""Composition root of the dialer: builds every dependency and runs the service.

Every replica consumes requests from RabbitMQ into the dials table; the replica holding the
dialer leadership lock runs the dial loop, so the dial rate is global; the one holding the
dialer-intake lock tails the event store for requests the queue never brought (dialer.intake).
Every replica also competes for the outbox-relay leadership.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Mapping

import structlog
from aiohttp import web
from calls_platform import amqp, leader, queue_depth, topology
from calls_platform.db import Pool, is_reachable, open_pool
from calls_platform.http import new_app
from calls_platform.logging import configure_logging
from calls_platform.migrate import migrate_service
from calls_platform.notify import Listener
from calls_platform.publishing import RelayHealth
from calls_platform.relay import start_relay
from calls_platform.service import amqp_url_from_env, run_command, serve, stop_tasks

from . import backlog
from .canceler import CarrierCanceler
from .config import Settings
from .consumer import QUEUES, Handlers
from .dials import CANCEL_CHANNEL, WORK_CHANNEL
from .intake import intake_watchdog
from .scheduler import DialLoop
from .twilio_carrier import TwilioCarrier
from .watchdog import StaleCallWatchdog

log = structlog.get_logger(__name__)

POOL: web.AppKey[Pool] = web.AppKey("pool")


async def migrate(database_url: str, amqp_url: str | None = None) -> None:
    """The event store's and the dialer schema's migrations and, given `amqp_url`, the
    RabbitMQ topology (`python -m dialer migrate` does all three, with AMQP_URL)."""
    await migrate_service(database_url, "dialer", amqp_url=amqp_url)


def create_app(settings: Settings) -> web.Application:
    broker_health = amqp.BrokerHealth()
    relay_health = RelayHealth()

    async def readiness() -> Mapping[str, bool]:
        return {
            "database": await is_reachable(app[POOL]),
            "broker": broker_health.connected,
            **relay_health.checks(),
        }

    app = new_app(readiness=readiness, reasons=relay_health.reasons)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await migrate(settings.database_url, settings.amqp_url)
        pool = await open_pool(settings.database_url, name="dialer", max_size=20)
        app[POOL] = pool
        carrier = TwilioCarrier(settings.twilio)
        broker = await amqp.connect(settings.amqp_url)
        broker_health.watch(broker)
        channel = await broker.channel()
        await channel.set_qos(prefetch_count=1000)
        handlers = Handlers(pool, recording_grace_seconds=settings.recording_grace_seconds)
        consumers = []
        for name in QUEUES:
            queue = await topology.declare_queue(channel, name)
            consumers.append((queue, await amqp.consume_in_batches(queue, handlers.handle_many)))

        work = Listener(settings.database_url, WORK_CHANNEL)
        dial_loop = DialLoop(
            pool,
            carrier,
            work,
            calls_per_second=settings.calls_per_second,
            max_in_flight=settings.max_in_flight,
            max_attempts=settings.max_attempts,
            ambiguous_safe_delay_seconds=settings.ambiguous_safe_delay_seconds,
            watchdog=StaleCallWatchdog(
                pool,
                carrier,
                stale_after_seconds=settings.stale_after_seconds,
                in_progress_check_seconds=settings.in_progress_check_seconds,
                recording_grace_seconds=settings.recording_grace_seconds,
            ),
        )
        intake = intake_watchdog(pool, grace_seconds=settings.intake_grace_seconds)
        cancels = Listener(settings.database_url, CANCEL_CHANNEL)
        canceler = CarrierCanceler(
            pool,
            carrier,
            queue_limit_seconds=settings.carrier_queue_limit_seconds,
            wakeup=cancels.subscribe(),
            recording_grace_seconds=settings.recording_grace_seconds,
        )
        tasks = [
            *start_relay(settings.database_url, pool, broker, health=relay_health),
            queue_depth.start_sampler(broker, [*QUEUES, amqp.DEAD_LETTER_QUEUE]),
            asyncio.create_task(
                backlog.sample_forever(pool, interval_seconds=settings.backlog_sample_seconds),
                name="dial-backlog",
            ),
            asyncio.create_task(work.run(), name="work-listener"),
            asyncio.create_task(
                leader.run_as_leader(settings.database_url, "dialer", dial_loop.run),
                name="dial-loop",
            ),
            asyncio.create_task(cancels.run(), name="cancel-listener"),
            # belt and braces behind dialer.requests: requests whose message never came
            asyncio.create_task(
                leader.run_as_leader(settings.database_url, "dialer-intake", intake.run),
                name="intake-watchdog",
            ),
            # apart from the dial loop: canceling is not dialing, and never waits behind it
            asyncio.create_task(
                leader.run_as_leader(settings.database_url, "dialer-carrier-cancels", canceler.run),
                name="carrier-canceler",
            ),
        ]
        yield
        # stop taking work first, then let in-flight dials finish and record their results
        for queue, consumer_tag in consumers:
            await queue.cancel(consumer_tag)
        await stop_tasks(tasks)
        await channel.close()
        await broker.close()
        await carrier.close()
        await pool.close()

    app.cleanup_ctx.append(resources)
    return app


def main() -> None:
    if run_command(sys.argv[1:], {"migrate": lambda url: migrate(url, amqp_url_from_env())}):
        return
    settings = Settings.from_env()
    configure_logging("dialer", json_logs=settings.json_logs, level=settings.log_level)
    serve(create_app(settings), host=settings.host, port=settings.port, shutdown_timeout=20)


if __name__ == "__main__":
    main()
