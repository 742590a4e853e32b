"""Command-line entry point (``carrier-sim`` / ``python -m carrier_sim``): logging and serving."""

from __future__ import annotations

import logging

import structlog
from aiohttp import web

from carrier_sim.app import create_app
from carrier_sim.config import SimConfig


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )


def main() -> None:
    """Read ``SIM_*`` env vars and serve until interrupted."""
    _configure_logging()
    config = SimConfig.from_env()
    log = structlog.get_logger("carrier_sim")
    log.info(
        "carrier_sim.starting",
        host=config.host,
        port=config.port,
        account_sid=config.account_sid,
        public_url=config.public_url,
    )
    web.run_app(create_app(config), host=config.host, port=config.port, print=None)


if __name__ == "__main__":
    main()
