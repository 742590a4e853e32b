"""The webhooks service's settings, read from the environment once, in main()."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field

from calls_platform.service import DEFAULT_DATABASE_URL

from .domain import RetryPolicy
from .sender import SenderSettings

# Used when WEBHOOKS_ENCRYPTION_KEY is not set (a warning is logged): fine for `make up`, never
# for production, where anyone who can read this file could decrypt the stored secrets.
_DEV_KEY_SEED = b"calls-backend development webhooks key"
DEV_ENCRYPTION_KEY = base64.urlsafe_b64encode(hashlib.sha256(_DEV_KEY_SEED).digest()).decode()


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    database_url: str
    amqp_url: str
    call_log_url: str
    host: str = "127.0.0.1"
    port: int = 8084
    encryption_key: str = DEV_ENCRYPTION_KEY
    previous_encryption_keys: tuple[str, ...] = ()
    # allow plain HTTP and private/loopback addresses (make up, tests): never in production
    allow_private: bool = False
    sender: SenderSettings = field(default_factory=SenderSettings)
    # how long the old secret keeps signing after a rotation
    rotation_grace_seconds: float = 24 * 3600.0
    # messages taken from RabbitMQ at once (each holds a connection while it is queued)
    prefetch: int = 10
    # how long the delivery log keeps a delivery after it was delivered or given up
    delivery_retention_days: float = 30.0
    json_logs: bool = False
    log_level: str = "INFO"
    migrate_on_start: bool = True

    @property
    def uses_dev_key(self) -> bool:
        return self.encryption_key == DEV_ENCRYPTION_KEY

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ

        def number(name: str, default: float) -> float:
            try:
                value = float(env.get(name, str(default)))
            except ValueError:
                raise ConfigError(f"{name} must be a number") from None
            if value <= 0:
                raise ConfigError(f"{name} must be positive")
            return value

        policy = RetryPolicy(
            base_seconds=number("WEBHOOKS_RETRY_BASE_SECONDS", 5.0),
            max_seconds=number("WEBHOOKS_RETRY_MAX_SECONDS", 3600.0),
            give_up_after_seconds=number("WEBHOOKS_RETRY_FOR_SECONDS", 24 * 3600.0),
        )
        sender = SenderSettings(
            per_endpoint=int(number("WEBHOOKS_ENDPOINT_CONCURRENCY", 5)),
            max_in_flight=int(number("WEBHOOKS_MAX_IN_FLIGHT", 100)),
            connect_timeout_seconds=number("WEBHOOKS_CONNECT_TIMEOUT_SECONDS", 5.0),
            timeout_seconds=number("WEBHOOKS_TIMEOUT_SECONDS", 15.0),
            excerpt_bytes=int(number("WEBHOOKS_RESPONSE_EXCERPT_BYTES", 1024)),
            disable_after_seconds=number("WEBHOOKS_DISABLE_AFTER_SECONDS", 24 * 3600.0),
            policy=policy,
        )
        previous = tuple(
            k.strip()
            for k in env.get("WEBHOOKS_PREVIOUS_ENCRYPTION_KEYS", "").split(",")
            if k.strip()
        )
        allow_private = env.get("WEBHOOKS_ALLOW_PRIVATE", "false").lower() == "true"
        return cls(
            database_url=env.get("DATABASE_URL", DEFAULT_DATABASE_URL),
            amqp_url=env.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            call_log_url=env.get("CALL_LOG_URL", "http://127.0.0.1:8081").rstrip("/"),
            host=env.get("WEBHOOKS_HOST", "127.0.0.1"),
            port=int(env.get("WEBHOOKS_PORT", "8084")),
            encryption_key=env.get("WEBHOOKS_ENCRYPTION_KEY") or DEV_ENCRYPTION_KEY,
            previous_encryption_keys=previous,
            allow_private=allow_private,
            sender=sender,
            rotation_grace_seconds=number("WEBHOOKS_ROTATION_GRACE_SECONDS", 24 * 3600.0),
            prefetch=int(number("WEBHOOKS_PREFETCH", 10)),
            delivery_retention_days=number("WEBHOOKS_DELIVERY_RETENTION_DAYS", 30.0),
            json_logs=env.get("LOG_FORMAT", "console") == "json",
            log_level=env.get("LOG_LEVEL", "INFO"),
            migrate_on_start=env.get("MIGRATE_ON_START", "true") == "true",
        )
