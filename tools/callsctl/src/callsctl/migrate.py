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
    database_url: str | None = None, *, before: Callable[[str], None] | None = None
) -> None:
    """Run `python -m <package> migrate` for every service; raises CalledProcessError on the
    first failure. `database_url` overrides DATABASE_URL; `before` is told each package."""
    env = dict(os.environ)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    for package in SERVICE_PACKAGES:
        if before is not None:
            before(package)
        subprocess.run([sys.executable, "-m", package, "migrate"], env=env, check=True)
