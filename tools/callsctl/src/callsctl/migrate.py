"""Apply every service's migrations (and the event store's), as `make up` and the Kubernetes
migration Job do: each service's own `python -m <package> migrate`, one after another."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Final

SERVICE_PACKAGES: Final = ("gateway", "dialer", "call_log", "recordings", "webhooks")


def migrate_all(
    database_url: str | None = None,
    *,
    amqp_url: str | None = None,
    before: Callable[[str], None] | None = None,
) -> None:
    """Run `python -m <package> migrate` for every service (the schema migrations, and the
    RabbitMQ topology from the services that use RabbitMQ); raises CalledProcessError on the
    first failure. `database_url` / `amqp_url` override DATABASE_URL / AMQP_URL; `before` is
    told each package."""
    env = dict(os.environ)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    if amqp_url is not None:
        env["AMQP_URL"] = amqp_url
    for package in SERVICE_PACKAGES:
        if before is not None:
            before(package)
        subprocess.run([sys.executable, "-m", package, "migrate"], env=env, check=True)
