"""The call log's settings, read from the environment once, in main()."""

from __future__ import annotations

import os
from dataclasses import dataclass

from calls_platform.settings import ServiceSettings, service_env


@dataclass(frozen=True)
class Settings(ServiceSettings):
    host: str = "127.0.0.1"
    port: int = 8081
    read_your_writes_seconds: float = 3.0

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            **service_env(),
            host=env.get("CALL_LOG_HOST", cls.host),
            port=int(env.get("CALL_LOG_PORT", cls.port)),
            read_your_writes_seconds=float(
                env.get("CALL_LOG_READ_WAIT_SECONDS", cls.read_your_writes_seconds)
            ),
        )
