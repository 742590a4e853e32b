"""What every service's settings share: the connection fields (DATABASE_URL, AMQP_URL), the
logging and migration switches (LOG_FORMAT, LOG_LEVEL, MIGRATE_ON_START), their parsing from
the environment, and `ConfigError`. Each service's `config.Settings` adds its own fields on
top (`class Settings(BrokerSettings)`) and spreads `broker_env()` (or `service_env()`) into
its constructor in `from_env`.

The environment is parsed by pydantic-settings, so a malformed value is refused by name
(`MIGRATE_ON_START=maybe`, `LOG_FORMAT=xml`) instead of silently meaning "false" or
"console".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/calls"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


class _ConnectionEnv(BaseSettings):
    """The shared variables as the environment gives them."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    database_url: str = Field(DEFAULT_DATABASE_URL, alias="DATABASE_URL", min_length=1)
    amqp_url: str = Field(DEFAULT_AMQP_URL, alias="AMQP_URL", min_length=1)
    log_format: Literal["console", "json"] = Field("console", alias="LOG_FORMAT")
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    migrate_on_start: bool = Field(True, alias="MIGRATE_ON_START")


def _read() -> _ConnectionEnv:
    """The shared variables, from the process environment (pydantic-settings reads it)."""
    try:
        return _ConnectionEnv()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """The fields every service has (keyword-only, so a service's own fields follow freely)."""

    database_url: str = DEFAULT_DATABASE_URL
    json_logs: bool = False
    log_level: str = "INFO"
    migrate_on_start: bool = True


@dataclass(frozen=True, kw_only=True)
class BrokerSettings(ServiceSettings):
    """The fields of a service that also talks to RabbitMQ."""

    amqp_url: str = DEFAULT_AMQP_URL


def service_env() -> dict[str, Any]:
    """`ServiceSettings`' fields from the environment, to spread into a service's Settings;
    raises ConfigError naming what is malformed."""
    return _service_fields(_read())


def broker_env() -> dict[str, Any]:
    """`BrokerSettings`' fields from the environment."""
    read = _read()
    return {**_service_fields(read), "amqp_url": read.amqp_url}


def _service_fields(read: _ConnectionEnv) -> dict[str, Any]:
    return {
        "database_url": read.database_url,
        "json_logs": read.log_format == "json",
        "log_level": read.log_level,
        "migrate_on_start": read.migrate_on_start,
    }
