"""The call log's settings, read from the environment once, in main()."""

from __future__ import annotations

import os
from dataclasses import dataclass

from calls_platform.service import DEFAULT_DATABASE_URL


@dataclass(frozen=True)
class Settings:
    database_url: str
    host: str
    port: int
    json_logs: bool
    log_level: str
    migrate_on_start: bool
    read_your_writes_seconds: float

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            database_url=env.get("DATABASE_URL", DEFAULT_DATABASE_URL),
            host=env.get("CALL_LOG_HOST", "127.0.0.1"),
            port=int(env.get("CALL_LOG_PORT", "8081")),
            json_logs=env.get("LOG_FORMAT", "console") == "json",
            log_level=env.get("LOG_LEVEL", "INFO"),
            migrate_on_start=env.get("MIGRATE_ON_START", "true") == "true",
            read_your_writes_seconds=float(env.get("CALL_LOG_READ_WAIT_SECONDS", "3")),
        )
