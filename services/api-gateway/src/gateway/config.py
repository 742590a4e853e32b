"""The gateway's settings, read from the environment once, in main()."""

from __future__ import annotations

import os
from dataclasses import dataclass

from calls_platform.service import DEFAULT_DATABASE_URL

DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-in-production"


@dataclass(frozen=True)
class Settings:
    database_url: str
    amqp_url: str
    host: str
    port: int
    public_base_url: str
    jwt_secret: str
    twilio_account_sid: str
    twilio_auth_token: str
    call_log_url: str
    max_batch_size: int
    max_body_bytes: int
    json_logs: bool
    log_level: str
    migrate_on_start: bool
    agent_stream_url: str = "wss://agent-runtime.invalid/stream"
    # the recordings service's internal API (recordings are streamed through the gateway)
    recordings_url: str = "http://127.0.0.1:8083"

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        port = int(env.get("GATEWAY_PORT", "8080"))
        return cls(
            database_url=env.get("DATABASE_URL", DEFAULT_DATABASE_URL),
            amqp_url=env.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            host=env.get("GATEWAY_HOST", "127.0.0.1"),
            port=port,
            public_base_url=env.get("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}").rstrip("/"),
            jwt_secret=env.get("JWT_SECRET", DEV_JWT_SECRET),
            twilio_account_sid=env.get("TWILIO_ACCOUNT_SID", ""),
            twilio_auth_token=env.get("TWILIO_AUTH_TOKEN", ""),
            call_log_url=env.get("CALL_LOG_URL", "http://127.0.0.1:8081").rstrip("/"),
            max_batch_size=int(env.get("MAX_BATCH_SIZE", "10000")),
            max_body_bytes=int(env.get("MAX_BODY_BYTES", str(1024 * 1024))),
            json_logs=env.get("LOG_FORMAT", "console") == "json",
            log_level=env.get("LOG_LEVEL", "INFO"),
            migrate_on_start=env.get("MIGRATE_ON_START", "true") == "true",
            agent_stream_url=env.get("AGENT_STREAM_URL", "wss://agent-runtime.invalid/stream"),
            recordings_url=env.get("RECORDINGS_URL", "http://127.0.0.1:8083").rstrip("/"),
        )
