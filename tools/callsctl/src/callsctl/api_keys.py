"""API keys are the gateway's: creating one runs the gateway's own admin command
(`python -m gateway create-api-key`), which prints the new key as one JSON object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any


class ApiKeyError(Exception):
    pass


def create_api_key(
    database_url: str | None, *, org: str, name: str, scopes: Sequence[str]
) -> dict[str, Any]:
    env = dict(os.environ)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "gateway", "create-api-key", "--org", org, "--name", name]
    for scope in scopes:
        command += ["--scope", scope]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ApiKeyError(
            f"gateway create-api-key exited {result.returncode}: "
            + (result.stderr.strip() or result.stdout.strip())
        )
    try:
        created = json.loads(result.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as exc:
        raise ApiKeyError(f"gateway create-api-key printed no JSON: {result.stdout!r}") from exc
    if not isinstance(created, dict):
        raise ApiKeyError(f"gateway create-api-key printed {created!r}, not an object")
    return created
