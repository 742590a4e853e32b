"""Webhooks are the webhooks service's: these run its own admin command
(`python -m webhooks admin …`), which prints one JSON document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


class WebhooksError(Exception):
    pass


def webhooks_admin(database_url: str | None, *args: str) -> Any:
    env = dict(os.environ)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "webhooks", "admin", *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise WebhooksError(
            f"webhooks admin {' '.join(args)} exited {result.returncode}: "
            + (result.stderr.strip() or result.stdout.strip())
        )
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as exc:
        raise WebhooksError(f"webhooks admin printed no JSON: {result.stdout!r}") from exc
