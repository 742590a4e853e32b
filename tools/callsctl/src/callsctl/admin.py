"""The services' own admin commands (`python -m <service> …`), each printing one JSON document
as its last line of output: callsctl runs them rather than reaching into their tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any


def run_admin(
    database_url: str | None, args: Sequence[str], *, error: type[Exception] = RuntimeError
) -> Any:
    """`python -m <args…>` with DATABASE_URL set (when given); its last line, parsed.
    A failing command or one that printed no JSON raises `error`, naming the command."""
    env = dict(os.environ)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    label = " ".join(args)
    result = subprocess.run(
        [sys.executable, "-m", *args], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise error(
            f"{label} exited {result.returncode}: "
            + (result.stderr.strip() or result.stdout.strip())
        )
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as exc:
        raise error(f"{label} printed no JSON: {result.stdout!r}") from exc
