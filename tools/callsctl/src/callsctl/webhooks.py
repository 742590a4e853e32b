"""Webhooks are the webhooks service's: these run its own admin command
(`python -m webhooks admin …`), which prints one JSON document."""

from __future__ import annotations

from typing import Any

from .admin import run_admin


class WebhooksError(Exception):
    pass


def webhooks_admin(database_url: str | None, *args: str) -> Any:
    return run_admin(database_url, ["webhooks", "admin", *args], error=WebhooksError)
