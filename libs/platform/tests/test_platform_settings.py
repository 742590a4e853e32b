"""The settings every service shares: read from the environment once, by name, and refused
by name when malformed."""

from __future__ import annotations

import pytest
from calls_platform.settings import (
    DEFAULT_AMQP_URL,
    DEFAULT_DATABASE_URL,
    ConfigError,
    broker_env,
    service_env,
)

SHARED = ("DATABASE_URL", "AMQP_URL", "LOG_FORMAT", "LOG_LEVEL", "MIGRATE_ON_START")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SHARED:
        monkeypatch.delenv(name, raising=False)


def test_unset_variables_give_the_local_defaults() -> None:
    assert broker_env() == {
        "database_url": DEFAULT_DATABASE_URL,
        "amqp_url": DEFAULT_AMQP_URL,
        "json_logs": False,
        "log_level": "INFO",
        "migrate_on_start": True,
    }


def test_set_variables_are_read_by_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    given = {
        "DATABASE_URL": "postgresql://db.internal/calls",
        "AMQP_URL": "amqp://mq.internal/",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "MIGRATE_ON_START": "false",
    }
    for name, value in given.items():
        monkeypatch.setenv(name, value)

    assert broker_env() == {
        "database_url": "postgresql://db.internal/calls",
        "amqp_url": "amqp://mq.internal/",
        "json_logs": True,
        "log_level": "WARNING",
        "migrate_on_start": False,
    }


def test_a_service_without_a_broker_gets_no_amqp_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://mq.internal/")
    assert "amqp_url" not in service_env()


@pytest.mark.parametrize(
    ("name", "value"),
    [("MIGRATE_ON_START", "maybe"), ("LOG_FORMAT", "xml"), ("DATABASE_URL", "")],
)
def test_a_malformed_value_is_refused_by_its_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        broker_env()
