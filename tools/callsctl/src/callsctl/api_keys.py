"""API keys are the gateway's: creating one runs the gateway's own admin command
(`python -m gateway create-api-key`), which prints the new key as one JSON object."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .admin import run_admin


class ApiKeyError(Exception):
    pass


def create_api_key(
    database_url: str | None, *, org: str, name: str, scopes: Sequence[str]
) -> dict[str, Any]:
    command = ["gateway", "create-api-key", "--org", org, "--name", name]
    for scope in scopes:
        command += ["--scope", scope]
    created = run_admin(database_url, command, error=ApiKeyError)
    if not isinstance(created, dict):
        raise ApiKeyError(f"gateway create-api-key printed {created!r}, not an object")
    return created
